import datetime as dt

from chispa import assert_approx_df_equality, assert_df_equality

from recsys_spark.config import InteractionsConfig
from recsys_spark.recs.interactions import build_id_map, build_interactions, index_interactions

WEIGHTS = {"view": 1.0, "click": 2.0, "purchase": 8.0}
AS_OF = dt.datetime(2026, 1, 31)
EVENT_SCHEMA = "user_id string, item_id string, event_type string, event_ts timestamp, value double"
OUT_SCHEMA = "user_id string, item_id string, confidence float, n_events int, max_value float, first_ts timestamp"


def events(spark, rows):
    return spark.createDataFrame(rows, EVENT_SCHEMA)


def test_implicit_weights_sum_per_pair(spark):
    ev = events(
        spark,
        [
            ("u1", "a", "view", dt.datetime(2026, 1, 1), None),
            ("u1", "a", "click", dt.datetime(2026, 1, 2), None),
            ("u1", "a", "purchase", dt.datetime(2026, 1, 3), 2.0),
            ("u2", "a", "view", dt.datetime(2026, 1, 3), None),
        ],
    )
    got = build_interactions(ev, InteractionsConfig(), WEIGHTS, AS_OF)
    expected = spark.createDataFrame(
        [("u1", "a", 11.0, 3, 2.0, dt.datetime(2026, 1, 1)), ("u2", "a", 1.0, 1, None, dt.datetime(2026, 1, 3))],
        OUT_SCHEMA,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_half_life_decay(spark):
    # 30 days before AS_OF with a 30-day half-life: half weight; 60 days: a quarter.
    ev = events(
        spark,
        [
            ("u1", "a", "purchase", AS_OF - dt.timedelta(days=30), 1.0),
            ("u1", "b", "click", AS_OF - dt.timedelta(days=60), None),
            ("u1", "b", "view", AS_OF, None),
        ],
    )
    got = build_interactions(ev, InteractionsConfig(half_life_days=30), WEIGHTS, AS_OF)
    expected = spark.createDataFrame(
        [
            ("u1", "a", 4.0, 1, 1.0, AS_OF - dt.timedelta(days=30)),
            ("u1", "b", 1.5, 2, None, AS_OF - dt.timedelta(days=60)),
        ],
        OUT_SCHEMA,
    )
    assert_approx_df_equality(got, expected, 1e-5, ignore_row_order=True, ignore_nullable=True)


def test_explicit_uses_latest_rating(spark):
    ev = events(
        spark,
        [
            ("u1", "a", "rating", dt.datetime(2026, 1, 1), 2.0),
            ("u1", "a", "rating", dt.datetime(2026, 1, 5), 5.0),
            ("u1", "a", "rating", dt.datetime(2026, 1, 3), 1.0),
            ("u2", "a", "rating", dt.datetime(2026, 1, 3), 3.5),
        ],
    )
    got = build_interactions(ev, InteractionsConfig(mode="explicit"), {"rating": 1.0}, AS_OF)
    expected = spark.createDataFrame(
        [("u1", "a", 5.0, 3, 5.0, dt.datetime(2026, 1, 1)), ("u2", "a", 3.5, 1, 3.5, dt.datetime(2026, 1, 3))],
        OUT_SCHEMA,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_minimum_counts_drop_users_and_items(spark):
    t = dt.datetime(2026, 1, 1)
    ev = events(
        spark,
        [
            (u, i, "view", t, None)
            for u, i in [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b"), ("u3", "a"), ("u1", "c")]
        ],
    )
    got = build_interactions(ev, InteractionsConfig(min_user_items=2, min_item_users=2), WEIGHTS, AS_OF)
    # u3 has one item; c has one user: both go, in one pass.
    expected = spark.createDataFrame(
        [(u, i, 1.0, 1, None, t) for u, i in [("u1", "a"), ("u1", "b"), ("u2", "a"), ("u2", "b")]], OUT_SCHEMA
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_id_map_is_contiguous_in_sorted_order(spark):
    ids = [f"u{i:03d}" for i in range(57)][::-1] * 2
    df = spark.createDataFrame([(x,) for x in ids], "user_id string").repartition(5)
    got = build_id_map(df, "user_id", "user_idx")
    expected = spark.createDataFrame([(f"u{i:03d}", i) for i in range(57)], "user_id string, user_idx int")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_id_map_by_first_activity_then_id(spark):
    # u3 starts first; u1 and u2 start together, so their ids decide; a user's earliest pair counts.
    t = dt.datetime(2026, 1, 1)
    df = spark.createDataFrame(
        [
            ("u2", t),
            ("u1", t),
            ("u3", t - dt.timedelta(hours=1)),
            ("u3", t + dt.timedelta(days=1)),
            ("u0", t + dt.timedelta(days=2)),
        ],
        "user_id string, first_ts timestamp",
    ).repartition(3)
    got = build_id_map(df, "user_id", "user_idx", "first_ts")
    expected = spark.createDataFrame([("u3", 0), ("u1", 1), ("u2", 2), ("u0", 3)], "user_id string, user_idx int")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_indexing_keeps_only_mapped_pairs(spark):
    pairs = spark.createDataFrame([("u1", "a", 1.0, 1, 4.0, AS_OF), ("u9", "a", 1.0, 1, None, AS_OF)], OUT_SCHEMA)
    users = spark.createDataFrame([("u1", 0)], "user_id string, user_idx int")
    items = spark.createDataFrame([("a", 0)], "item_id string, item_idx int")
    got = index_interactions(pairs, users, items)
    expected = spark.createDataFrame(
        [(0, 0, 1.0, 1, 4.0)], "user_idx int, item_idx int, confidence float, n_events int, max_value float"
    )
    assert_df_equality(got, expected, ignore_nullable=True)
