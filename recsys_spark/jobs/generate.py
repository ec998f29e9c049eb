"""generate: synthetic raw events (Hive-partitioned Parquet) at `input.path` for demos and benchmarks."""

from __future__ import annotations

import logging

from pyspark.sql import SparkSession

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.events.sources import missing_input
from recsys_spark.events.synthetic import generate_events, item_texts_table
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.tables import write_table
from recsys_spark.results import GenerateResult

log = logging.getLogger("recsys_spark")


def generate(spark: SparkSession, cfg: Config) -> GenerateResult:
    g = cfg.generate
    log.info("[generate] about %d events for %d users, %d items -> %s", g.events, g.users, g.items, cfg.input_path)
    write_table(generate_events(spark, g), cfg.input_path, partition_by=names.EVENT_DATE, whole_table=True)
    rows = spark.read.parquet(cfg.input_path).count()  # from the Parquet footers
    log.info("[generate] wrote %d raw events to %s", rows, cfg.input_path)
    # The catalogue's titles, for the items stage: --set text.path=<output.root>/raw_items --set text.format=parquet
    write_table(spark.createDataFrame(item_texts_table(g)), cfg.path(names.RAW_ITEMS), whole_table=True)
    return GenerateResult(generated=True, rows=rows, path=cfg.input_path)


def generate_if_missing(spark: SparkSession, cfg: Config) -> GenerateResult:
    """Generate demo input when no input path is configured and none was generated yet."""
    if path_exists(spark, cfg.input_path):
        log.info("[generate] input exists at %s; not regenerating", cfg.input_path)
        return GenerateResult(generated=False, path=cfg.input_path)
    if cfg.input.path is not None:
        raise missing_input(cfg.input.path)
    return generate(spark, cfg)
