"""evaluate-new-items: the cold-item protocol (see new_items) on the clean events and item texts;
metrics per method to the eval/new_items table, the summary and MLflow."""

from __future__ import annotations

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.items.new import evaluate_new_items
from recsys_spark.jobs.items import embeddings_table, read_texts
from recsys_spark.recs.interactions import prepare_interactions
from recsys_spark.results import NewItemsEvalResult


def evaluate_new(spark: SparkSession, cfg: Config) -> NewItemsEvalResult:
    if cfg.text.path is None:
        raise RecsysError("evaluate-new-items needs item texts: set text.path (see README: New items)")
    events = read_table(spark, cfg.path(names.EVENTS)).select(*S.EVENT_COLUMNS)
    last = events.agg(F.max("event_ts")).first()[0]
    data = prepare_interactions(events, cfg.interactions, cfg.events.weights, last)
    emb, model, _, _ = embeddings_table(spark, cfg, read_texts(spark, cfg))
    with_idx = emb.join(data.items, "item_id").select("item_idx", "vector")
    k = cfg.train.k
    ev = evaluate_new_items(data.pairs, with_idx, cfg.als, cfg.new_items, k)
    rows = [
        {"method": m, "metric": name, "value": v}
        for m, row in ev.metrics.items()
        for name, v in row.items()
        if name != "users_evaluated"
    ]
    write_table(spark.createDataFrame(pd.DataFrame(rows)), cfg.path(names.NEW_ITEMS_EVAL))
    data.release()
    return NewItemsEvalResult(
        k=k,
        encoder=model,
        metrics_by_method=ev.metrics,
        chosen=ev.chosen.describe(),
        items_held_out=ev.items_held_out,
        items_without_text=ev.items_without_text,
        users_evaluated=ev.users_evaluated,
        paths={"eval/new_items": cfg.path(names.NEW_ITEMS_EVAL)},
    )
