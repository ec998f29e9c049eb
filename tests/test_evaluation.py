import math

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality

from recsys_spark.recs.evaluation import (
    ItemMeasures,
    beyond_accuracy,
    list_measures,
    per_user_metrics,
    relevant_items,
    summarize,
)

L2 = math.log2
RECS_SCHEMA = "user_idx int, rank int, item_idx int, score float"


@pytest.fixture
def toy(spark):
    # user 1: ranks 1-5 = items 10..14, relevant {11, 13, 99}: hits at ranks 2 and 4.
    # user 2: ranks 1-2 = items 20, 21, relevant {20}: hit at rank 1.
    # user 3: no recommendations, relevant {30}.
    recs = [(1, r, 9 + r, 1.0 / r) for r in range(1, 6)] + [(2, 1, 20, 0.9), (2, 2, 21, 0.8)]
    rel = [(1, 11), (1, 13), (1, 99), (2, 20), (3, 30)]
    return spark.createDataFrame(recs, RECS_SCHEMA), spark.createDataFrame(rel, "user_idx int, item_idx int")


def test_every_metric_on_a_hand_computed_ranking(spark, toy):
    recs, rel = toy
    got = per_user_metrics(recs, rel, k=5)
    ndcg1 = (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4))
    expected = spark.createDataFrame(
        [
            (1, 3, 2, 2 / 5, 2 / 3, ndcg1, (1 / 2 + 2 / 4) / 3, 1.0),
            (2, 1, 1, 1 / 5, 1.0, 1.0, 1.0, 1.0),
            (3, 1, 0, 0.0, 0.0, 0.0, 0.0, 0.0),
        ],
        "user_idx int, n_relevant int, hits int, precision double, recall double, "
        "ndcg double, map double, hit_rate double",
    )
    assert_approx_df_equality(got, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_k_cuts_the_ranking(spark, toy):
    recs, rel = toy
    got = {r.user_idx: r for r in per_user_metrics(recs, rel, k=2).collect()}
    assert got[1].hits == 1 and got[1].precision == 0.5
    assert got[1].ndcg == pytest.approx((1 / L2(3)) / (1 + 1 / L2(3)))  # ideal: min(|R|=3, k=2) hits
    assert got[1].map == pytest.approx((1 / 2) / 2)


def test_summary_means_and_catalog_coverage(spark, toy):
    recs, rel = toy
    s = summarize(per_user_metrics(recs, rel, 5), recs, n_catalog=10, k=5, prefix="baseline_")
    ndcg1 = (1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4))
    assert s["baseline_precision_at_5"] == pytest.approx((0.4 + 0.2) / 3)
    assert s["baseline_recall_at_5"] == pytest.approx((2 / 3 + 1) / 3)
    assert s["baseline_ndcg_at_5"] == pytest.approx((ndcg1 + 1) / 3)
    assert s["baseline_map_at_5"] == pytest.approx((1 / 3 + 1) / 3)
    assert s["baseline_hit_rate_at_5"] == pytest.approx(2 / 3)
    assert s["baseline_catalog_coverage"] == pytest.approx(7 / 10)
    assert s["baseline_users_evaluated"] == 3


def test_relevant_items_exclude_seen_and_users_without_history(spark):
    train = spark.createDataFrame([(1, 10), (1, 11), (2, 20)], "user_idx int, item_idx int")
    test = spark.createDataFrame([(1, 10), (1, 12), (1, 12), (3, 30), (2, 21)], "user_idx int, item_idx int")
    got = sorted(tuple(r) for r in relevant_items(train, test).collect())
    assert got == [(1, 12), (2, 21)]


def _numpy_metrics(recs: pd.DataFrame, rel: pd.DataFrame, k: int) -> pd.DataFrame:
    """An independent implementation, loop by loop from the textbook definitions."""
    out = []
    for user, items in rel.groupby("user_idx").item_idx:
        relevant = set(items)
        ranked = recs[(recs.user_idx == user) & (recs["rank"] <= k)].sort_values("rank").item_idx.tolist()
        gains = np.array([1.0 if i in relevant else 0.0 for i in ranked])
        hits = gains.sum()
        dcg = sum(g / np.log2(r + 2) for r, g in enumerate(gains))
        idcg = sum(1 / np.log2(r + 2) for r in range(min(len(relevant), k)))
        ap = sum(gains[: r + 1].sum() / (r + 1) for r in range(len(gains)) if gains[r]) / min(len(relevant), k)
        out.append((user, hits / k, hits / len(relevant), dcg / idcg, ap, float(hits > 0)))
    return pd.DataFrame(out, columns=["user_idx", "precision", "recall", "ndcg", "map", "hit_rate"])


def test_spark_metrics_match_an_independent_numpy_implementation(spark):
    rng = np.random.default_rng(3)
    recs, rel = [], []
    for u in range(300):
        ranked = rng.choice(60, size=rng.integers(0, 15), replace=False)
        recs += [(u, r + 1, int(i), 1.0) for r, i in enumerate(ranked)]
        rel += [(u, int(i)) for i in rng.choice(60, size=rng.integers(1, 12), replace=False)]
    recs_pd = pd.DataFrame(recs, columns=["user_idx", "rank", "item_idx", "score"])
    rel_pd = pd.DataFrame(rel, columns=["user_idx", "item_idx"])
    got = per_user_metrics(
        spark.createDataFrame(recs_pd, RECS_SCHEMA), spark.createDataFrame(rel_pd, "user_idx int, item_idx int"), 10
    )
    got = got.select("user_idx", "precision", "recall", "ndcg", "map", "hit_rate")
    expected = spark.createDataFrame(
        _numpy_metrics(recs_pd, rel_pd, 10),
        "user_idx int, precision double, recall double, ndcg double, map double, hit_rate double",
    )
    assert_approx_df_equality(got, expected, 1e-9, ignore_row_order=True, ignore_nullable=True)


def test_diversity_and_novelty_by_hand(spark):
    # items 1 = (1, 0), 2 = (0, 1), 3 = (2, 2): cos(1, 2) = 0, cos(1, 3) = cos(2, 3) = 1/sqrt(2).
    vectors = spark.createDataFrame(
        [(1, [1.0, 0.0]), (2, [0.0, 1.0]), (3, [2.0, 2.0])], "id int, features array<float>"
    )
    recs = spark.createDataFrame(
        [(7, 1, 1, 0.9), (7, 2, 2, 0.8), (8, 1, 1, 0.9), (8, 2, 2, 0.8), (8, 3, 3, 0.7), (9, 1, 3, 0.5)], RECS_SCHEMA
    )
    # 8 training users: item 1 used by 8 (share 1: 0 bits), item 2 by 2 (1/4: 2 bits), item 3 by 1 (1/8: 3 bits).
    pop = spark.createDataFrame([(1, 8.0), (2, 2.0), (3, 1.0)], "item_idx int, popularity float")
    c = 1 / math.sqrt(2)
    expected = spark.createDataFrame(
        [(7, 1.0, 1.0, 2), (8, 1 - (0 + c + c) / 3, 5 / 3, 3), (9, None, 3.0, 1)],  # user 9: one item, no pairs
        "user_idx int, diversity double, novelty double, items int",
    )
    measures = ItemMeasures.of(vectors, pop, n_users=8)
    got = list_measures(recs, measures, k=3)
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)
    cut = beyond_accuracy(recs, measures, k=2)  # lists cut at 2
    assert cut == {"diversity_at_2": pytest.approx(1.0), "novelty_at_2": pytest.approx((0 + 2 + 0 + 2 + 3) / 5)}
