"""items: item texts -> embeddings (unchanged ones reused) -> factors from text for new items ->
the new_items lists and similar_items. Skipped when text.path is not set."""

from __future__ import annotations

import datetime as dt
import logging
import time
import uuid

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.analytics.arms import TREATMENT, assign_arms
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events.privacy import erased_ids, without_erased
from recsys_spark.events.sources import read_side_table
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.infra.timing import Stopwatch
from recsys_spark.items.new import choose_map, item_status, recommend_new, similar_items
from recsys_spark.items.texts import embed, item_texts
from recsys_spark.mlops import tracking
from recsys_spark.recs.model import load_model
from recsys_spark.recs.topn import ItemMatrix
from recsys_spark.results import ItemsResult

log = logging.getLogger("recsys_spark")


def read_texts(spark: SparkSession, cfg: Config) -> DataFrame:
    """(item_id, text) from the configured side table."""
    t = cfg.text
    table = read_side_table(spark, "text.path", t.format, t.path, t.options)
    missing = sorted({t.id_column, *t.columns} - set(table.columns))
    if missing:
        raise RecsysError(
            f"text.path {t.path} has no column(s) {missing} (its columns: {table.columns}): "
            "set text.id_column and text.columns"
        )
    return item_texts(table, t.id_column, t.columns)


def embeddings_table(spark: SparkSession, cfg: Config, texts: DataFrame) -> tuple[DataFrame, str, int, float]:
    """Write the embeddings table for `texts`, reusing the rows of the last one whose text and
    model are unchanged; (the table, model name, items encoded now, seconds)."""
    path = cfg.path(names.EMBEDDINGS)
    previous = read_table(spark, path) if path_exists(spark, path) else None
    t0 = time.perf_counter()
    rows, model, reused = embed(texts, cfg.text, previous)
    write_table(rows, path, whole_table=True)
    table = read_table(spark, path)
    encoded = table.count() - reused
    log.info("[items] %s: %d items encoded, %d reused", model, encoded, reused)
    return table, model, encoded, time.perf_counter() - t0


def items(spark: SparkSession, cfg: Config, run_id: str | None = None) -> ItemsResult:
    if cfg.text.path is None:
        log.info("[items] text.path is not set: no item texts, so no new_items or similar_items tables")
        return ItemsResult()
    clock = Stopwatch("items")
    clock.start("embed")
    texts = read_texts(spark, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    n_texts = texts.count()
    if not n_texts:
        raise RecsysError(f"text.path {cfg.text.path} gave no item texts: check text.id_column and text.columns")
    emb, model_name, encoded, encode_secs = embeddings_table(spark, cfg, texts)
    texts.unpersist()

    clock.start("map")
    m = load_model(spark, cfg.model_path)
    events = read_table(spark, cfg.path(names.EVENTS))
    last = events.agg(F.max("event_ts")).first()[0]
    status = item_status(events, last, cfg.new_items)
    # Every item with text, once on the driver (catalogue-sized): its index when the model knows it,
    # and whether it is new (young, few users, or no events at all).
    catalogue = (
        emb.join(m.items, "item_id", "left")
        .join(status, "item_id", "left")
        .select("item_id", "item_idx", "vector", F.coalesce(F.col("is_new"), F.lit(True)).alias("is_new"))
        .toPandas()
    )
    indexed = catalogue[catalogue["item_idx"].notna()]
    text = ItemMatrix.from_pandas(indexed, "item_idx", "vector")
    factors = ItemMatrix.of(m.als.itemFactors)
    old = indexed.loc[~indexed["is_new"], "item_idx"].to_numpy(np.int64)
    warm = factors.ids[np.isin(factors.ids, old)]
    x_warm, y_warm = text.take(warm), factors.take(warm)
    chosen = choose_map(m.als, m.seen, warm, x_warm, y_warm, cfg.new_items, cfg.train.k)
    log.info(
        "[items] new-item factors by %s (validation NDCG@%d: %s)",
        chosen.source,
        cfg.train.k,
        ", ".join(f"{k} {v:.3f}" for k, v in chosen.labelled().items()),
    )
    new = catalogue[catalogue["is_new"]]
    new_ids = new["item_id"].tolist()
    x_new = (
        np.vstack(new["vector"].to_numpy()).astype(np.float32)
        if new_ids
        else np.zeros((0, x_warm.shape[1]), np.float32)
    )
    new_factors = chosen.factors(x_warm, y_warm, x_new)

    clock.start("new_items")
    run_id = run_id or tracking.current_run_id() or uuid.uuid4().hex
    today = dt.datetime.now(dt.UTC).date()
    users = without_erased(m.users, "user_id", erased_ids(spark, cfg))  # forgotten users are served nothing
    # The control arm gets no personalised list of new items either (it would contaminate the control).
    users = assign_arms(users, cfg.recommend.holdout).where(F.col("arm") == TREATMENT).drop("arm")
    users = users.join(m.als.userFactors.withColumnRenamed("id", "user_idx"), "user_idx").select(
        "user_id", F.col("user_idx").alias("id"), "features"
    )
    seen = m.seen.join(m.users, "user_idx").join(m.items, "item_idx").select("user_id", "item_id")
    rows_new = 0
    if new_ids:
        recs = recommend_new(users, seen, new_ids, new_factors, cfg.new_items.n, chosen.source)
        write_table(
            recs.withColumn("run_id", F.lit(run_id)).withColumn("run_date", F.lit(today)),
            cfg.path(names.NEW_ITEMS),
            "run_date",
        )
        rows_new = read_table(spark, cfg.path(names.NEW_ITEMS)).where(F.col("run_date") == F.lit(today)).count()
    else:
        log.info("[items] no new items with text: the new_items table is left as it was")

    clock.start("similar")
    id_map = m.items.toPandas().set_index("item_idx")["item_id"]  # the catalogue's id map
    factor_ids = id_map.reindex(factors.ids).tolist()
    sim = similar_items(spark, factor_ids, factors.vectors, np.arange(len(factor_ids)), cfg.new_items.similar_n, "als")
    if new_ids:
        vectors = np.vstack(catalogue["vector"].to_numpy()).astype(np.float32)
        of = np.flatnonzero(catalogue["is_new"].to_numpy())
        sim = sim.unionByName(
            similar_items(spark, catalogue["item_id"].tolist(), vectors, of, cfg.new_items.similar_n, "text")
        )
    write_table(sim, cfg.path(names.SIMILAR_ITEMS))
    rows_sim = read_table(spark, cfg.path(names.SIMILAR_ITEMS)).count()
    catalogue_without_text = m.items.join(emb.select("item_id"), "item_id", "left_anti").count()
    return ItemsResult(
        texts=n_texts,
        catalogue_without_text=catalogue_without_text,
        encoder=model_name,
        encoded=encoded,
        encode_seconds=round(encode_secs, 2),
        new_items=len(new_ids),
        method=chosen.describe(),
        validation=chosen.labelled(),
        rows_new_items=rows_new,
        rows_similar=rows_sim,
        steps=clock.stop(),
        paths={
            "embeddings": cfg.path(names.EMBEDDINGS),
            "new_items": cfg.path(names.NEW_ITEMS),
            "similar_items": cfg.path(names.SIMILAR_ITEMS),
        },
    )
