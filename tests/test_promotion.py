"""The champion scored on the challenger's test split (recs/promotion.py): its factors re-keyed by id,
the same top-N and metric code on the same users, and a paired bootstrap interval checked against a
simulation where the difference is known."""

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality

from recsys_spark.recs.model import Factors
from recsys_spark.recs.promotion import head_to_head, paired_bootstrap, rekeyed, saw_test_window
from recsys_spark.results import SplitInfo

FACTORS = "id int, features array<float>"


class Saved:
    """The parts of a TrainedModel that re-keying reads."""

    def __init__(self, spark, users, items, user_factors, item_factors):
        self.users = spark.createDataFrame(users, "user_id string, user_idx int")
        self.items = spark.createDataFrame(items, "item_id string, item_idx int")
        self.als = Factors(spark.createDataFrame(user_factors, FACTORS), spark.createDataFrame(item_factors, FACTORS))


def test_the_champions_factors_are_rekeyed_to_the_challengers_ids(spark):
    champion = Saved(
        spark, [("u1", 0), ("u2", 1)], [("a", 0), ("b", 1)], [(0, [1.0]), (1, [2.0])], [(0, [0.5]), (1, [0.7])]
    )
    users = spark.createDataFrame([("u2", 0), ("u1", 1), ("u3", 2)], "user_id string, user_idx int")
    items = spark.createDataFrame([("b", 0), ("c", 1), ("a", 2)], "item_id string, item_idx int")
    got = rekeyed(champion, users, items)
    # u1 is the challenger's 1, u2 its 0; u3 is new (no factors). Item a is its 2, b its 0; c has none.
    assert_df_equality(got.userFactors, spark.createDataFrame([(0, [2.0]), (1, [1.0])], FACTORS), ignore_row_order=True)
    assert_df_equality(got.itemFactors, spark.createDataFrame([(0, [0.7]), (2, [0.5])], FACTORS), ignore_row_order=True)


def test_head_to_head_scores_both_models_on_the_same_users_by_hand(spark):
    pairs = "user_idx int, item_idx int"
    train = spark.createDataFrame([(0, 0), (1, 1), (2, 0)], pairs)
    test = spark.createDataFrame([(0, 2), (1, 3), (2, 3)], pairs)
    # Rank 1: every user [1], items scored 0.1, 0.2, 0.9, 0.5. Top-2 without the seen item: user 0
    # gets [2, 3] (hit at rank 1: NDCG 1), user 1 gets [2, 3] (hit at rank 2: 1 / log2 3 = 0.6309).
    # User 2 has no champion factors: left out of both means.
    champion = Factors(
        spark.createDataFrame([(0, [1.0]), (1, [1.0])], FACTORS),
        spark.createDataFrame([(0, [0.1]), (1, [0.2]), (2, [0.9]), (3, [0.5])], FACTORS),
    )
    mine = spark.createDataFrame([(0, 0.5), (1, 1.0), (2, 0.0)], "user_idx int, ndcg double")
    head = head_to_head(champion, mine, train, test, 2, "ndcg", refit=False, samples=200, seed=7)
    ndcg_1 = 1 / math.log2(3)
    assert (head.metric, head.users, head.refit) == ("ndcg_at_2", 2, False)
    assert head.challenger == pytest.approx(0.75) and head.champion == pytest.approx((1 + ndcg_1) / 2)
    # Two users' differences, -0.5 and +0.369: every resampled mean lies between them.
    assert -0.5 <= head.low < head.high <= 1.0 - ndcg_1 + 1e-9


def test_the_paired_bootstrap_interval_against_a_simulation(spark):
    # 3,000 users whose true mean difference is 0.05 (per-user sd 0.2): the interval covers it and is
    # as wide as the normal theory's 2 x 1.96 x sd / sqrt(n) = 0.0143, within 15%.
    rng = np.random.default_rng(3)
    d = 0.05 + rng.normal(0, 0.2, 3000)
    pairs = spark.createDataFrame(pd.DataFrame({"user_idx": np.arange(3000, dtype="int32"), "a": d, "b": 0.0}))
    low, high = paired_bootstrap(pairs, samples=400, seed=11)
    assert low < 0.05 < high and low < d.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * d.std(ddof=1) / math.sqrt(3000), rel=0.15)
    constant = spark.createDataFrame([(u, 0.3, 0.1) for u in range(50)], "user_idx int, a double, b double")
    assert paired_bootstrap(constant, samples=50, seed=1) == pytest.approx((0.2, 0.2))


def test_a_champion_whose_data_reaches_the_test_window_has_seen_it():
    split = SplitInfo("temporal", cutoff=dt.datetime(2026, 4, 6), test_end=dt.datetime(2026, 4, 20))
    assert not saw_test_window("2026-04-05", split)  # its data ended before the cutoff: its own model
    assert saw_test_window("2026-04-06", split) and saw_test_window("2026-04-20", split)
    assert saw_test_window(None, split)  # a version from before dataset tags: assume it has
    assert saw_test_window("2000-01-01", SplitInfo("random", test_fraction=0.2))  # random test pairs span all dates
