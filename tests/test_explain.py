"""Why this item: the exact decomposition of ALS scores into the user's history items."""

import numpy as np
import pytest
from chispa import assert_df_equality

from recsys_spark.config import ALSConfig
from recsys_spark.recs.kernels import Explain, explain_scores
from recsys_spark.recs.model import fit_als
from recsys_spark.recs.topn import top_n

BECAUSE = "array<struct<item_id:string,name:string,share:float>>"


def toy_pairs(seed=0):
    rng = np.random.default_rng(seed)
    return [(int(u), int(i), float(rng.integers(1, 5))) for u in range(30) for i in rng.choice(20, 6, replace=False)]


@pytest.mark.parametrize("implicit", [True, False])
def test_contributions_sum_to_the_score_of_a_spark_fit(spark, implicit):
    rows = toy_pairs()
    model = fit_als(
        spark.createDataFrame(rows, "user_idx int, item_idx int, confidence float"),
        ALSConfig(rank=4, reg_param=0.1, alpha=2.0, max_iter=10),
        implicit,
    )
    items = {r.id: r.features for r in model.itemFactors.collect()}
    ids = np.array(sorted(items))
    vt = np.array([items[i] for i in ids], dtype=np.float32).T
    gram = vt.astype(np.float64) @ vt.T.astype(np.float64)
    for user in model.userFactors.collect():
        history = [(i, c) for u, i, c in rows if u == user.id]
        cols = np.searchsorted(ids, [i for i, _ in history])
        contrib = explain_scores(
            vt, gram, cols, np.array([c for _, c in history]), np.arange(ids.size), implicit, 2.0, 0.1
        )
        assert contrib.shape == (ids.size, len(history))
        np.testing.assert_allclose(contrib.sum(axis=1), vt.T @ np.array(user.features), atol=2e-5)


def test_because_by_hand(spark):
    # Explicit, no regularisation, items a=(1,0), b=(0,1): W = I, so item j adds r_j * y_i'y_j.
    # The user rated a 2 and b 1, hence x = (2, 1): c=(1,1) scores 3 = 2 (a) + 1 (b); d=(1,-1)
    # scores 1 = 2 (a) - 1 (b), and a negative contribution is not a reason.
    items = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [0.0, 1.0]), (2, [1.0, 1.0]), (3, [1.0, -1.0])], "id int, features array<float>"
    )
    users = spark.createDataFrame([(7, [2.0, 1.0])], "id int, features array<float>")
    seen = spark.createDataFrame([(7, 0, 2.0), (7, 1, 1.0)], "user_idx int, item_idx int, weight float")
    explain = Explain(
        implicit=False,
        alpha=0.0,
        reg_param=0.0,
        item_ids=np.array(["a", "b", "c", "d"], object),
        names=np.array(["Apple", None, "Cherry", "Date"], object),
    )
    got = top_n(users, items, seen, 2, explain=explain)
    expected = spark.createDataFrame(
        [
            (7, 1, 2, 3.0, [("a", "Apple", 2 / 3), ("b", None, 1 / 3)]),
            (7, 2, 3, 1.0, [("a", "Apple", 2.0)]),
        ],
        f"user_idx int, rank int, item_idx int, score float, because {BECAUSE}",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_agrees_with_implicit_explain():
    implicit = pytest.importorskip("implicit")
    from scipy.sparse import csr_matrix

    rng = np.random.default_rng(1)
    y = rng.normal(size=(12, 3)).astype(np.float32)  # items x rank
    history, ratings = np.array([1, 4, 7, 9]), np.array([1.0, 3.0, 0.5, 2.0])
    alpha, reg = 2.0, 0.05
    ours = explain_scores(
        y.T, y.T.astype(np.float64) @ y.astype(np.float64), history, ratings, np.array([5]), True, alpha, reg
    )[0]
    # implicit: confidence = alpha x value and a fixed regularisation, so give it c = 1 + alpha r,
    # alpha 1 and Spark's reg x n.
    model = implicit.cpu.als.AlternatingLeastSquares(
        factors=3, regularization=reg * len(history), alpha=1.0, random_state=0
    )
    model.item_factors, model.user_factors = y, np.zeros((1, 3), np.float32)
    row = csr_matrix((1.0 + alpha * ratings, (np.zeros(4, int), history)), shape=(1, 12))
    total, top, _ = model.explain(0, row, 5, N=4)
    assert total == pytest.approx(ours.sum(), rel=1e-4)
    assert {int(i): s for i, s in top} == pytest.approx(
        dict(zip(history.tolist(), ours, strict=True)), rel=1e-3, abs=1e-5
    )
