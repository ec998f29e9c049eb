"""The pure training pieces: splits on a hand-built frame, the refit decision, the popular fallback."""

import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import Config, InteractionsConfig, SplitConfig
from recsys_spark.recs.interactions import prepare_interactions
from recsys_spark.recs.model import TrainedModel, fit_als
from recsys_spark.recs.split import make_splits
from recsys_spark.recs.topn import popularity, recommend_users
from recsys_spark.recs.training import fit_and_evaluate, serving_pairs
from recsys_spark.results import SplitInfo

WEIGHTS = {"view": 1.0}
T = dt.datetime
# Data ends 2026-01-28, so with 7 test and 7 follow-up days the cutoff is 2026-01-15 00:00 (1 + 28 - 14),
# the test horizon [Jan 15, Jan 22), and tuning validates on [Jan 8, Jan 15).
EVENTS = [
    ("u1", "a", T(2026, 1, 1, 10)),  # train, tune-train
    ("u1", "b", T(2026, 1, 8)),  # exactly on the validation cut: train, tune-validation
    ("u1", "c", T(2026, 1, 14, 23, 59, 59)),  # last second before the cutoff: train, tune-validation
    ("u1", "d", T(2026, 1, 15)),  # exactly on the cutoff: test
    ("u1", "e", T(2026, 1, 21, 23, 59, 59)),  # last second of the test horizon: test
    ("u1", "f", T(2026, 1, 22)),  # exactly on the test end: follow-up, in no split
    ("u2", "a", T(2026, 1, 2)),
    ("u2", "g", T(2026, 1, 28)),  # the last event: follow-up
]


def events_df(spark):
    rows = [(u, i, "view", ts, None, ts.date()) for u, i, ts in EVENTS]
    return spark.createDataFrame(
        rows, "user_id string, item_id string, event_type string, event_ts timestamp, value double, event_date date"
    )


def named(df, data):
    return df.join(data.users, "user_idx").join(data.items, "item_idx").select("user_id", "item_id")


def pairs(spark, rows):
    return spark.createDataFrame(rows, "user_id string, item_id string")


def test_temporal_splits_put_boundary_events_on_the_right_side(spark):
    events = events_df(spark)
    data = prepare_interactions(events, InteractionsConfig(), WEIGHTS, T(2026, 1, 28))
    s = make_splits(events, data, SplitConfig(test_days=7, followup_days=7), 7, T(2026, 1, 28))
    assert s.info == SplitInfo("temporal", cutoff=T(2026, 1, 15), test_end=T(2026, 1, 22), followup_end=T(2026, 1, 29))

    def eq(df, rows):
        return assert_df_equality(named(df, data), pairs(spark, rows), ignore_row_order=True, ignore_nullable=True)

    eq(s.train, [("u1", "a"), ("u1", "b"), ("u1", "c"), ("u2", "a")])
    eq(s.test, [("u1", "d"), ("u1", "e")])
    eq(s.tune_train, [("u1", "a"), ("u2", "a")])
    eq(s.tune_val, [("u1", "b"), ("u1", "c")])
    s.release()
    data.release()


def test_random_split_holds_out_within_each_user_and_again_for_tuning(spark):
    events = events_df(spark)
    data = prepare_interactions(events, InteractionsConfig(), WEIGHTS, T(2026, 1, 28))
    s = make_splits(events, data, SplitConfig(method="random", test_fraction=0.5, seed=1), 7, T(2026, 1, 28))
    assert s.info == SplitInfo("random", test_fraction=0.5)

    # u1 has 6 items, u2 has 2: round(n / 2) of each held out (half up), then the same again inside
    # the training side for tuning: 2 of u1's 3 and 1 of u2's 1.
    def per_user(df):
        return sorted((r.user_idx, r["count"]) for r in df.groupBy("user_idx").count().collect())

    assert per_user(s.test) == [(0, 3), (1, 1)] and per_user(s.train) == [(0, 3), (1, 1)]
    assert (
        s.train.unionByName(s.test).exceptAll(data.pairs).count() == 0
        and s.train.join(s.test, ["user_idx", "item_idx"]).count() == 0
    )
    assert per_user(s.tune_val) == [(0, 2), (1, 1)] and s.tune_train.exceptAll(s.train).count() == 0
    s.release()
    data.release()


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_refit_decision_serves_all_interactions_or_the_training_side(spark, tmp_path):
    events = events_df(spark)
    data = prepare_interactions(events, InteractionsConfig(), WEIGHTS, T(2026, 1, 28))
    s = make_splits(events, data, SplitConfig(test_days=7, followup_days=7), 7, T(2026, 1, 28))
    assert serving_pairs(s, data, refit_on_all=True) is data.pairs
    assert serving_pairs(s, data, refit_on_all=False) is s.train
    cfg = Config()
    cfg.tune.enabled, cfg.als.rank, cfg.als.max_iter, cfg.train.k = False, 2, 2, 3
    cfg.train.refit_on_all = False
    kept = fit_and_evaluate(s, data, cfg)
    assert (
        kept.seen is s.train and kept.served.userFactors.count() == 2
    )  # the evaluated model, fitted before the cutoff
    assert kept.served.itemFactors.count() == 3  # a, b, c: items seen before the cutoff
    cfg.train.refit_on_all = True
    refit = fit_and_evaluate(s, data, cfg)
    assert refit.seen is data.pairs and refit.served.itemFactors.count() == 7  # every item, follow-up ones too
    assert refit.evaluation.metrics == kept.evaluation.metrics  # evaluation never sees the refit
    s.release()
    data.release()


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_users_without_factors_get_the_most_popular_items_ties_by_index(spark):
    # Popularity (distinct users): a 3, b 2, c 2, d 1; b and c tie and b has the lower index.
    seen_rows = [("u1", "a"), ("u2", "a"), ("u3", "a"), ("u1", "b"), ("u2", "c"), ("u3", "b"), ("u1", "c"), ("u3", "d")]
    named_pairs = spark.createDataFrame(
        [(u, i, 1.0) for u, i in seen_rows], "user_id string, item_id string, confidence float"
    )
    users = spark.createDataFrame([(f"u{k}", k - 1) for k in (1, 2, 3, 4)], "user_id string, user_idx int")
    items = spark.createDataFrame([(c, k) for k, c in enumerate("abcd")], "item_id string, item_idx int")
    seen = named_pairs.join(users, "user_id").join(items, "item_id").select("user_idx", "item_idx", "confidence")
    cfg = Config().als
    cfg.rank, cfg.max_iter = 2, 2
    # u4 is in the id maps and saw b, but the model has no factors for u4 (as when not refitted on all data).
    seen_all = seen.unionByName(spark.createDataFrame([(3, 1, 1.0)], "user_idx int, item_idx int, confidence float"))
    model = TrainedModel(
        fit_als(seen, cfg, implicit=True), users, items, seen_all.select("user_idx", "item_idx"), popularity(seen), {}
    )
    wanted = spark.createDataFrame([("nobody",), ("u2",)], "user_id string")
    recs = recommend_users(model, wanted, 3)
    expected = spark.createDataFrame(
        [  # scores are the share of the model's 4 users who chose the item: a 3/4, b and c 2/4
            ("nobody", 1, "a", 0.75, "popular_unknown_user"),
            ("nobody", 2, "b", 0.5, "popular_unknown_user"),
            ("nobody", 3, "c", 0.5, "popular_unknown_user"),
        ],
        "user_id string, rank int, item_id string, score float, source string",
    )
    cols = ["user_id", "rank", "item_id", "score", "source"]
    assert_df_equality(
        recs.where(F.col("user_id") == "nobody").select(*cols), expected, ignore_row_order=True, ignore_nullable=True
    )
    assert {(r.because, r.why) for r in recs.where(F.col("user_id") == "nobody").collect()} == {
        (None, "popular with all users: the model has never seen this user")
    }
    known = recs.where(F.col("user_id") == "u2").collect()  # u2 saw a and c: ALS ranks the other two
    assert sorted(r.item_id for r in known) == ["b", "d"] and {r.source for r in known} == {"als"}
    everyone = recommend_users(model, None, 3)  # every user the model knows: u4 too, without what u4 saw
    u4 = spark.createDataFrame(
        [("u4", 1, "a", 0.75, "popular"), ("u4", 2, "c", 0.5, "popular"), ("u4", 3, "d", 0.25, "popular")],
        "user_id string, rank int, item_id string, score float, source string",
    )
    assert_df_equality(
        everyone.where(F.col("user_id") == "u4").select(*cols), u4, ignore_row_order=True, ignore_nullable=True
    )
    assert everyone.select("user_id").distinct().count() == 4
