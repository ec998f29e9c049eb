"""recommend: top-N per user from a saved model (seen excluded) to the recommendations table.

Users on the erasure list get no rows, whether asked for by --users or not: a forget stays in
force even for a model trained before it, or one whose directory was restored."""

from __future__ import annotations

import datetime as dt
import uuid

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from .. import tracking
from ..config import Config
from ..model import load_model
from ..privacy import erased_ids, pseudonym_key, table_id, without_erased
from ..results import RecommendResult
from ..tables import path_exists, read_table, write_table
from ..topn import recommend_users
from .items import read_texts


def recommend(spark: SparkSession, cfg: Config, run_id: str | None = None) -> RecommendResult:
    path = cfg.recommend.model or cfg.path("model")
    if path.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        path = tracking.download_model(path)
    model = load_model(spark, path)
    wanted = None
    if cfg.recommend.users:
        key = pseudonym_key(cfg.privacy)  # the tables hold pseudonyms: --users gives raw ids
        wanted = spark.createDataFrame([(table_id(key, u),) for u in cfg.recommend.users], "user_id string").distinct()
    erased = erased_ids(spark, cfg)
    if erased is not None:
        wanted = without_erased(wanted if wanted is not None else model.users.select("user_id"), "user_id", erased)
    run_id = run_id or tracking.current_run_id() or uuid.uuid4().hex
    today = dt.datetime.now(dt.UTC).date()
    names = read_texts(spark, cfg).withColumnRenamed("text", "name") if cfg.text.path else None
    out = (
        recommend_users(model, wanted, cfg.recommend.n, names)
        .withColumn("run_id", F.lit(run_id))
        .withColumn("run_date", F.lit(today))
    )
    table = cfg.path("recommendations")
    if wanted is not None and path_exists(spark, f"{table}/run_date={today}"):
        # Some users only: today's rows of everyone else stay (the partition is rewritten whole).
        others = read_table(spark, table).where(F.col("run_date") == F.lit(today)).join(wanted, "user_id", "left_anti")
        out = others.select(*[c for c in out.columns if c in others.columns]).unionByName(out, allowMissingColumns=True)
    write_table(out, table, "run_date")
    written = read_table(spark, cfg.path("recommendations")).where(F.col("run_date") == F.lit(today))
    counts = {r["source"]: r["count"] for r in written.groupBy("source").count().collect()}
    return RecommendResult(run_id=run_id, rows_by_source=counts, paths={"recommendations": cfg.path("recommendations")})
