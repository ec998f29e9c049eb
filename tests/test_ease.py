"""EASE (recs/ease.py): the closed form against its defining optimality condition, the Spark Gram
against XᵀX, top-N against numpy, and the catalogue limit."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from recsys_spark.config import ConfigError, load_config
from recsys_spark.errors import RecsysError
from recsys_spark.mlops.serving import Recommender
from recsys_spark.recs.ease import (
    Setting,
    Weights,
    best_setting,
    ease_top_n,
    fit,
    gram,
    item_ids_and_gram,
    rekeyed,
    validation_scores,
    weights,
    weights_frame,
)
from recsys_spark.recs.evaluation import per_user_metrics
from recsys_spark.recs.kernels import _histories, _pairs, ease_block, with_unit_weights
from recsys_spark.recs.model import load_model, remove_users, save_model
from recsys_spark.recs.topn import recommend_users
from recsys_spark.recs.training import pick_family
from recsys_spark.recs.tuning import TuningData

PAIRS = "user_idx int, item_idx int"


def test_b_solves_the_constrained_least_squares_with_a_zero_diagonal():
    # B minimises ||X - XB||² + λ||B||² subject to diag(B) = 0: the gradient (G + λI)B - G is zero
    # off the diagonal (the diagonal carries the constraint's multipliers).
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], float)
    g, lam = x.T @ x, 2.0
    b = weights(g, Setting(lam))
    residual = (g + lam * np.eye(4)) @ b - g
    assert np.allclose(np.diag(b), 0) and np.allclose(residual - np.diag(np.diag(residual)), 0)


def test_edlae_dropout_adds_a_penalty_proportional_to_each_items_count():
    # EDLAE (dropout p) in closed form: EASE's condition with Λ = λI + p/(1-p)·diag(G). Here
    # diag(G) = (3, 3, 4, 2), p = 0.2: p/(1-p) = 0.25, so Λ = diag(2.75, 2.75, 3, 2.5).
    x = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0], [0, 0, 1, 1]], float)
    g = x.T @ x
    b = weights(g, Setting(2.0, dropout=0.2))
    residual = (g + np.diag([2.75, 2.75, 3.0, 2.5])) @ b - g
    assert np.allclose(np.diag(b), 0) and np.allclose(residual - np.diag(np.diag(residual)), 0)
    assert not np.allclose(b, weights(g, Setting(2.0)))  # and it is not plain EASE
    assert np.array_equal(weights(g, Setting(2.0, dropout=0.0)), weights(g, Setting(2.0)))


def test_the_spark_gram_is_xtx(spark):
    rows = [(0, 0), (0, 1), (1, 0), (1, 2), (2, 1), (2, 2), (2, 3), (2, 3)]  # a repeated pair counts once
    x = np.zeros((3, 4))
    for u, i in rows:
        x[u, i] = 1
    ids = np.array([0, 1, 2, 3])
    assert np.array_equal(gram(spark.createDataFrame(rows, PAIRS), ids), x.T @ x)
    # Many users over both tasks (each counts its own users; the driver sums), item_idx not positions.
    rng = np.random.default_rng(3)
    x = (rng.random((200, 9)) < 0.4).astype(float)
    ids = np.arange(9) * 7 + 2
    pairs = spark.createDataFrame([(int(u), int(ids[i])) for u, i in zip(*np.nonzero(x), strict=True)], PAIRS)
    assert np.array_equal(gram(pairs.repartition(5), ids), x.T @ x)


def test_top_n_is_the_users_history_times_b_without_seen_items(spark):
    rng = np.random.default_rng(5)
    x = (rng.random((30, 12)) < 0.3).astype(float)
    x[:, 0] = 1  # every user has item 0: all have a history
    ids = np.arange(12) * 10  # item_idx 0, 10, ..., 110: positions are not indexes
    pairs = spark.createDataFrame([(int(u), int(ids[i])) for u, i in zip(*np.nonzero(x), strict=True)], PAIRS)
    items, g = item_ids_and_gram(pairs, max_items=100)
    assert items.tolist() == ids.tolist() and np.array_equal(g, x.T @ x)
    b = weights(g, Setting(5.0))
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


@pytest.mark.parametrize("dropouts", ["[]", "[1.0]", "[0.1, -0.2]"])
def test_dropouts_must_be_in_zero_one_and_given(dropouts):
    with pytest.raises(ConfigError, match=r"ease.dropouts must be a non-empty list of numbers in \[0, 1\), got"):
        load_config(None, [f"ease.dropouts={dropouts}"])


def test_because_terms_sum_to_the_ease_score():
    # A user's EASE score for item t is the sum over their history h of B[h, t]: one term per item.
    rng = np.random.default_rng(3)
    b = rng.normal(size=(6, 6))
    np.fill_diagonal(b, 0)
    owners, history = np.array([0, 0, 0, 1]), np.array([0, 2, 5, 1])  # user 0 has items 0, 2, 5; user 1 item 1
    targets = np.array([[1, 3], [0, 4]])
    terms = ease_block(b, owners, history, targets)
    x = np.zeros((2, 6))
    x[owners, history] = 1
    assert terms.shape == (2, 2, 3)
    assert np.allclose(terms.sum(axis=2), np.take_along_axis(x @ b, targets, axis=1))
    assert terms[0, 1].tolist() == [b[0, 3], b[2, 3], b[5, 3]] and terms[1, 0].tolist() == [b[1, 0], 0, 0]


@pytest.mark.parametrize(
    ("family", "validation", "serves"),
    [
        ("auto", {"als": 0.20, "ease": 0.25}, "ease"),  # EASE better on validation
        ("auto", {"als": 0.30, "ease": 0.25}, "als"),  # ALS better
        ("auto", {"als": 0.25, "ease": 0.25}, "als"),  # a tie keeps ALS
        ("auto", {"als": 0.25}, "als"),  # EASE skipped (catalogue above ease.max_items)
        ("ease", {"als": 0.30, "ease": 0.25}, "ease"),  # a named family serves whatever the scores
    ],
)
def test_auto_serves_the_family_with_the_better_validation_score(family, validation, serves):
    assert pick_family(family, validation) == serves


def test_validation_scores_agree_with_the_spark_top_n_and_metrics(spark):
    # The driver-side search of settings (the sampled validation users, as ALS's trials) scores what Spark's
    # ease_top_n and per_user_metrics score for the same users.
    rng = np.random.default_rng(11)
    x = (rng.random((40, 15)) < 0.3).astype(int)
    x[:, 0] = 1
    train = pd.DataFrame(np.argwhere(x), columns=["user_idx", "item_idx"]).astype("int32")
    held = (rng.random((40, 15)) < 0.15) & (x == 0)
    relevant = pd.DataFrame(np.argwhere(held), columns=["user_idx", "item_idx"]).astype("int32")
    users = pd.DataFrame({"user_idx": sorted(relevant.user_idx.unique()), "in_rung": True})
    pairs = spark.createDataFrame(train)
    data = TuningData(pairs, None, users, train[train.user_idx.isin(users.user_idx)], relevant)
    got = validation_scores(data, [Setting(2.0), Setting(50.0), Setting(2.0, 0.3)], 5, "ndcg", max_items=100)
    items, g = item_ids_and_gram(pairs, 100)
    for setting, score in got.items():
        recs = ease_top_n(pairs, spark.createDataFrame(users[["user_idx"]]), items, weights(g, setting), 5)
        spark_mean = per_user_metrics(recs, spark.createDataFrame(relevant), 5).agg({"ndcg": "avg"}).first()[0]
        assert score == pytest.approx(spark_mean, rel=1e-5), setting


def test_the_best_setting_prefers_plain_ease_then_the_smaller_lambda_on_ties():
    scores = {Setting(50.0): 0.3, Setting(2.0, 0.1): 0.3, Setting(2.0): 0.3, Setting(9.0): 0.1}
    assert best_setting(scores) == Setting(2.0)
    assert best_setting({Setting(2.0): 0.2, Setting(500.0, 0.1): 0.21}) == Setting(500.0, 0.1)
    assert Setting(500.0).label == "500" and Setting(500.0, 0.1).label == "500 (dropout 0.1)"


def test_a_saved_model_names_its_setting_and_one_saved_before_edlae_is_plain_ease():
    assert Setting.of_model({"ease_lambda": 500, "ease_dropout": 0.25}) == Setting(500.0, 0.25)
    assert Setting.of_model(Setting(50.0, 0.1).saved()) == Setting(50.0, 0.1)
    assert Setting.of_model({"family": "ease", "ease_lambda": 200.0}) == Setting(200.0, 0.0)


@pytest.fixture(scope="module")
def ease_served(spark, trained, tmp_path_factory):
    """The shared trained model turned into an EASE-serving one (B on its seen pairs, λ 10)."""
    cfg, _ = trained
    m = load_model(spark, cfg.path("model"))
    fitted = fit(m.seen, Setting(10.0), max_items=1000)
    path = str(tmp_path_factory.mktemp("ease") / "model")
    served = dataclasses.replace(
        m, config={**m.config, "family": "ease", "ease_lambda": 10.0}, ease=weights_frame(spark, fitted)
    )
    save_model(served, path)
    return cfg, path, fitted


def test_an_ease_model_serves_the_same_lists_from_spark_and_the_pyfunc(spark, ease_served):
    cfg, path, fitted = ease_served
    m = load_model(spark, path)
    users = [r.user_id for r in m.users.orderBy("user_id").limit(4).collect()]
    wanted = spark.createDataFrame([(u,) for u in [*users, "nobody"]], "user_id string")
    rows = recommend_users(m, wanted, 5).orderBy("user_id", "rank").collect()
    pyfunc = Recommender()
    pyfunc.load(Path(path))
    served = pyfunc.predict(None, pd.DataFrame({"user_id": [*users, "nobody"]}))
    assert {r.source for r in rows if r.user_id != "nobody"} == {"ease"}
    assert {r.source for r in rows if r.user_id == "nobody"} == {"popular_unknown_user"}
    assert [(r.user_id, r.rank, r.item_id, r.source) for r in rows] == [
        (r.user_id, int(r.rank), r.item_id, r.source) for r in served.sort_values(["user_id", "rank"]).itertuples()
    ]
    assert [r.score for r in rows] == pytest.approx(served.sort_values(["user_id", "rank"]).score.tolist(), rel=1e-5)
    # Each score is the user's history times B, and each `because` share is one history item's B cell.
    seen = m.seen.join(m.users, "user_idx").where(F.col("user_id") == users[0]).toPandas()
    ids = m.items.toPandas().set_index("item_id").item_idx
    pos = pd.Series(np.arange(fitted.items.size), index=fitted.items)
    history = pos[seen.item_idx].to_numpy()
    first = [r for r in rows if r.user_id == users[0]]
    for r in first:
        column = fitted.b[history, pos[ids[r.item_id]]]
        assert r.score == pytest.approx(column.sum(), rel=1e-4)
        for reason in r.because:
            cell = fitted.b[pos[ids[reason.item_id]], pos[ids[r.item_id]]]
            assert reason.share * r.score == pytest.approx(cell, rel=1e-3, abs=1e-6)
        assert r.why.startswith("because of ")


def test_forget_keeps_ease_weights_and_drops_the_user(spark, ease_served, tmp_path):
    _, path, _ = ease_served
    copy = str(tmp_path / "model")
    shutil.copytree(path, copy)
    user = load_model(spark, copy).users.orderBy("user_id").first().user_id
    removed, _ = remove_users(spark, copy, spark.createDataFrame([(user,)], "user_id string"))
    after = load_model(spark, copy)
    assert removed == 1 and after.ease is not None and after.ease.count() == load_model(spark, path).ease.count()
    assert after.users.where(F.col("user_id") == user).count() == 0
    assert recommend_users(after, None, 5).where(F.col("source") == "ease").count() > 0


def test_histories_of_a_sliced_batch_skip_items_outside_the_catalogue():
    # A champion's B re-keyed to this run covers only the items both runs have: a user's items
    # beyond it (index past the position map, or unmapped) have no row, and slices keep their own lists.
    seen = pa.array([[0], [5, 9, 2], [7, 30]], pa.list_(pa.int64()))  # 30: past the map; 9: not in B
    batch = pa.RecordBatch.from_arrays([pa.array([10, 11, 12]), seen], names=["user_idx", "seen"]).slice(1, 2)
    pos = np.full(10, -1)
    pos[[2, 5, 7]] = [0, 1, 2]  # B's catalogue: items 2, 5, 7
    got = with_unit_weights(batch)
    assert got.column("user_idx").to_pylist() == [11, 12]
    assert got.column("weights").to_pylist() == [[1.0, 1.0, 1.0], [1.0, 1.0]]  # one per listed item
    rows, cols, _ = _pairs(got.column("seen"), pos)  # what score_batch scores a batch without features from
    assert _histories(rows, cols, 2, 3).toarray().tolist() == [[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


def test_an_ease_champion_is_rekeyed_by_item_id_and_scores_the_challengers_users(spark):
    # The champion knew items a, b, c (idx 0, 1, 2); this run numbers them b=0, c=1, d=2, a=3: a
    # and b and c keep their B cells under the new numbers, d (new) has none.
    b = np.array([[0, 0.5, 0.2], [0.4, 0, 0.1], [0.3, 0.6, 0]], np.float32)
    own = spark.createDataFrame([("a", 0), ("b", 1), ("c", 2)], "item_id string, item_idx int")
    other = spark.createDataFrame([("b", 0), ("c", 1), ("d", 2), ("a", 3)], "item_id string, item_idx int")
    got = rekeyed(Weights(np.array([0, 1, 2]), b), own, other)
    assert got.items.tolist() == [0, 1, 3]  # b, c, a in this run's numbers, sorted
    assert np.array_equal(got.b, b[np.ix_([1, 2, 0], [1, 2, 0])])
    # User 0 has a, d and e (new here, outside the champion's catalogue; e past its highest index):
    # scored by a's row alone, a itself excluded.
    pairs = spark.createDataFrame([(0, 3), (0, 2), (0, 5)], PAIRS)
    recs = ease_top_n(pairs, pairs.select("user_idx").distinct(), got.items, got.b, 2).orderBy("rank").collect()
    assert [(r.item_idx, round(r.score, 4)) for r in recs] == [(0, 0.5), (1, 0.2)]  # a->b 0.5, a->c 0.2
