import datetime as dt

from pyspark.sql import functions as F

from recsys_spark.recs.split import default_cutoff, random_split, temporal_split


def test_temporal_split_has_no_leakage(spark):
    base = dt.datetime(2026, 1, 1)
    ev = spark.createDataFrame(
        [("u", "i", base + dt.timedelta(hours=h)) for h in range(0, 24 * 30, 5)],
        "user_id string, item_id string, event_ts timestamp",
    )
    cutoff = dt.datetime(2026, 1, 20)
    train, test = temporal_split(ev, cutoff, 7)
    assert train.agg(F.max("event_ts")).first()[0] < cutoff
    assert test.agg(F.min("event_ts")).first()[0] >= cutoff
    assert test.agg(F.max("event_ts")).first()[0] < cutoff + dt.timedelta(days=7)
    assert train.count() + test.count() == ev.where(F.col("event_ts") < cutoff + dt.timedelta(days=7)).count()


def test_default_cutoff_keeps_the_last_test_days():
    assert default_cutoff(dt.datetime(2026, 4, 26, 23, 59), 14) == dt.datetime(2026, 4, 13)


def test_random_split_holds_out_each_users_fraction_reproducibly(spark):
    sizes = {0: 1, 1: 2, 2: 5, 3: 10, 4: 23}
    rows = [(u, i, 1.0) for u, n in sizes.items() for i in range(n)]
    inter = spark.createDataFrame(rows, "user_idx int, item_idx int, confidence float").repartition(3)
    train, test = random_split(inter, 0.2, seed=7)
    held = {r.user_idx: r["count"] for r in test.groupBy("user_idx").count().collect()}
    assert held == {2: 1, 3: 2, 4: 5}  # round(0.2 n): 0, 0, 1, 2, 5 (4.6 -> 5)
    assert train.count() + test.count() == len(rows)
    assert train.join(test, ["user_idx", "item_idx"]).count() == 0
    again = random_split(inter.repartition(2), 0.2, seed=7)[1]
    assert sorted(test.collect()) == sorted(again.collect())
    other = random_split(inter, 0.2, seed=8)[1]
    assert sorted(test.collect()) != sorted(other.collect())
