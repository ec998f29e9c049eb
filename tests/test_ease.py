"""EASE (recs/ease.py): the closed form against its defining optimality condition, the Spark Gram
against XᵀX, top-N against numpy, and the catalogue limit."""

import numpy as np
import pandas as pd
import pytest

from recsys_spark.config import ConfigError, load_config
from recsys_spark.errors import RecsysError
from recsys_spark.recs.ease import ease_top_n, gram, item_ids_and_gram, weights

PAIRS = "user_idx int, item_idx int"


def test_b_solves_the_constrained_least_squares_with_a_zero_diagonal():
    # B minimises ||X - XB||² + λ||B||² subject to diag(B) = 0: the gradient (G + λI)B - G is zero
    # off the diagonal (the diagonal carries the constraint's multipliers).
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], float)
    g, lam = x.T @ x, 2.0
    b = weights(g, lam)
    residual = (g + lam * np.eye(4)) @ b - g
    assert np.allclose(np.diag(b), 0) and np.allclose(residual - np.diag(np.diag(residual)), 0)


def test_the_spark_gram_is_xtx(spark):
    rows = [(0, 0), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2), (2, 3), (2, 3)]  # a repeated pair counts once
    got = gram(spark.createDataFrame(rows, PAIRS)).toPandas()
    x = np.zeros((3, 4))
    for u, i in rows:
        x[u, i] = 1
    dense = np.zeros((4, 4))
    dense[got["i"], got["j"]] = got["count"]
    assert np.array_equal(dense, x.T @ x)


def test_top_n_is_the_users_history_times_b_without_seen_items(spark):
    rng = np.random.default_rng(5)
    x = (rng.random((30, 12)) < 0.3).astype(float)
    x[:, 0] = 1  # every user has item 0: all have a history
    ids = np.arange(12) * 10  # item_idx 0, 10, ..., 110: positions are not indexes
    pairs = spark.createDataFrame([(int(u), int(ids[i])) for u, i in zip(*np.nonzero(x), strict=True)], PAIRS)
    items, g = item_ids_and_gram(pairs, max_items=100)
    assert items.tolist() == ids.tolist() and np.array_equal(g, x.T @ x)
    b = weights(g, 5.0)
    got = ease_top_n(pairs, pairs.select("user_idx").distinct(), items, b, 3).toPandas()
    scores = (x @ b).astype(np.float32)
    scores[x > 0] = -np.inf
    for u in range(30):
        best = np.argsort(-scores[u], kind="stable")[:3]
        best = best[np.isfinite(scores[u, best])]
        mine = got[got.user_idx == u].sort_values("rank")
        assert mine.item_idx.tolist() == ids[best].tolist(), u
        assert mine.score.to_numpy() == pytest.approx(scores[u, best], rel=1e-4, abs=1e-6)


def test_a_catalogue_above_max_items_is_refused_with_the_memory_it_needs(spark):
    pairs = spark.createDataFrame(pd.DataFrame({"user_idx": [0] * 5, "item_idx": range(5)}).astype("int32"))
    with pytest.raises(RecsysError, match=r"5 x 5 dense matrices \(0\.0 GiB on the driver\).*ease.max_items=4"):
        item_ids_and_gram(pairs, max_items=4)


@pytest.mark.parametrize("lambdas", ["[]", "[0]", "[100, -5]"])
def test_lambdas_must_be_positive_and_given(lambdas):
    with pytest.raises(ConfigError, match=r"ease.lambdas must be a non-empty list of numbers > 0"):
        load_config(None, [f"ease.lambdas={lambdas}"])
