"""The dataset tags of a run that reads the clean-events table (train, retention): which data it saw."""

from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.infra.filesystem import list_names
from recsys_spark.mlops import tracking


def log_events_tags(spark: SparkSession, cfg: Config, events: DataFrame) -> dict[str, str]:
    """Tag the active run with the data it read: the raw input (`dataset_input`, the dataset's name)
    and the clean-events table's path, rows, dates and partitions. The tags ({} without a run)."""
    if tracking.current_run_id() is None:
        return {}
    path = cfg.path(names.EVENTS)
    row = events.agg(F.count("*"), F.min("event_date"), F.max("event_date")).first()
    tags = {
        "dataset_input": cfg.input_path,
        "dataset_path": path,
        **tracking.fingerprint(row[0], row[1], row[2], list_names(spark, path)),
    }
    tracking.log_tags(tags)
    return tags
