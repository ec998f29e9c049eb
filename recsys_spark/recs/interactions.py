"""Clean events -> (user, item, confidence) interactions with the integer ids ALS needs.

Implicit mode: confidence = sum over a pair's events of weight[event_type] x 0.5^(age / half-life).
Explicit mode: confidence = the latest rating (`value`). Ids are mapped to contiguous ints by
rank in sorted order (users by first activity, then id): a distinct + sort + per-partition row number,
with per-partition offsets (one small row per partition). That stays in the JVM and needs no
global window or fitted StringIndexer; the same ids always get the same ints for the same input.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.config import InteractionsConfig


def weight_events(
    events: DataFrame,
    weights: Mapping[str, float],
    half_life_days: float | None,
    as_of: dt.datetime,
    use_value: bool = False,
) -> DataFrame:
    """Add `weight`: the event type's weight (x value if `use_value`), decayed by age relative to `as_of`."""
    pairs = [F.lit(x) for k, v in weights.items() for x in (k, float(v))]
    w = F.create_map(*pairs)[F.col("event_type")]
    if use_value:
        w = w * F.coalesce(F.col("value"), F.lit(1.0))
    if half_life_days:
        age_days = (F.lit(as_of).cast("double") - F.col("event_ts").cast("double")) / 86400.0
        w = w * F.pow(F.lit(0.5), F.greatest(age_days, F.lit(0.0)) / half_life_days)
    return events.withColumn("weight", w.cast("double"))


def aggregate_interactions(weighted: DataFrame, mode: str) -> DataFrame:
    """(user_id, item_id, confidence, n_events, max_value, first_ts) per pair; max_value (the
    highest event value, e.g. the rating) is what `als.min_value` compares, first_ts (the pair's
    first event) is what users are numbered by."""
    counts = [
        F.count("*").cast("int").alias("n_events"),
        F.max("value").cast("float").alias("max_value"),
        F.min("event_ts").alias("first_ts"),
    ]
    if mode == "explicit":
        rated = weighted.where(F.col("value").isNotNull())
        return rated.groupBy("user_id", "item_id").agg(
            F.max_by("value", "event_ts").cast("float").alias("confidence"), *counts
        )
    return weighted.groupBy("user_id", "item_id").agg(F.sum("weight").cast("float").alias("confidence"), *counts)


def filter_min_counts(interactions: DataFrame, min_user_items: int, min_item_users: int) -> DataFrame:
    """Drop users with fewer than `min_user_items` items and items with fewer than `min_item_users` users (one pass)."""
    if min_user_items <= 1 and min_item_users <= 1:
        return interactions
    u = Window.partitionBy("user_id")
    i = Window.partitionBy("item_id")
    return (
        interactions.withColumn("_nu", F.count("*").over(u))
        .withColumn("_ni", F.count("*").over(i))
        .where((F.col("_nu") >= min_user_items) & (F.col("_ni") >= min_item_users))
        .drop("_nu", "_ni")
    )


def build_interactions(
    events: DataFrame, cfg: InteractionsConfig, weights: Mapping[str, float], as_of: dt.datetime
) -> DataFrame:
    """Events -> filtered (user_id, item_id, confidence, n_events, max_value)."""
    if cfg.min_value is not None:
        events = events.where(F.col("value") >= cfg.min_value)
    return (
        events.transform(weight_events, weights, cfg.half_life_days, as_of, cfg.use_value)
        .transform(aggregate_interactions, cfg.mode)
        .transform(filter_min_counts, cfg.min_user_items, cfg.min_item_users)
    )


def build_id_map(df: DataFrame, id_col: str, idx_col: str, first: str | None = None) -> DataFrame:
    """(id_col, idx_col): each distinct id numbered 0..n-1 in sorted order, or by its earliest
    `first` value and then id. Users are numbered by first activity, so renaming them
    (pseudonyms) leaves the numbering, hence the fitted model, unchanged wherever no two users
    start at the same instant."""
    keys = df.groupBy(id_col).agg(F.min(first).alias("_first")) if first else df.select(id_col).distinct()
    order = ["_first", id_col] if first else [id_col]
    ranked = (
        keys.orderBy(*order)
        .withColumn("_part", F.spark_partition_id())
        .withColumn("_pos", F.row_number().over(Window.partitionBy("_part").orderBy(*order)) - 1)
        .persist(StorageLevel.MEMORY_AND_DISK)  # offsets and ids must come from the same partitioning
    )
    counts = sorted((r["_part"], r["count"]) for r in ranked.groupBy("_part").count().collect())
    starts, total = [], 0
    for part, n in counts:  # one row per partition, not per id
        starts.append((part, total))
        total += n
    offsets = df.sparkSession.createDataFrame(starts, "_part int, _start long")
    return ranked.join(F.broadcast(offsets), "_part").select(
        id_col, (F.col("_start") + F.col("_pos")).cast("int").alias(idx_col)
    )


def index_interactions(interactions: DataFrame, user_map: DataFrame, item_map: DataFrame) -> DataFrame:
    """Replace string ids by the maps' ints; pairs whose user or item is not mapped are dropped."""
    return (
        interactions.join(user_map, "user_id")
        .join(item_map, "item_id")
        .select("user_idx", "item_idx", "confidence", "n_events", "max_value")
    )


@dataclass
class IndexedInteractions:
    """Every interaction with its id maps (all persisted); `pairs_for` indexes any slice of the
    events with the same maps, so train, test and validation pairs share one id space."""

    pairs: DataFrame  # user_idx, item_idx, confidence, n_events, max_value
    users: DataFrame  # user_id, user_idx
    items: DataFrame  # item_id, item_idx
    cfg: InteractionsConfig
    weights: Mapping[str, float]

    def pairs_for(self, events: DataFrame, as_of: dt.datetime) -> DataFrame:
        """Indexed pairs of `events` (no min-count filter: a slice keeps every mapped pair)."""
        unfiltered = dataclasses.replace(self.cfg, min_user_items=1, min_item_users=1)
        return index_interactions(build_interactions(events, unfiltered, self.weights, as_of), self.users, self.items)

    def release(self) -> None:
        for df in (self.pairs, self.users, self.items):
            df.unpersist()


def prepare_interactions(
    events: DataFrame, cfg: InteractionsConfig, weights: Mapping[str, float], as_of: dt.datetime
) -> IndexedInteractions:
    """Events -> filtered interactions, id maps built from them, and the indexed pairs (all persisted)."""
    keep = StorageLevel.MEMORY_AND_DISK
    named = build_interactions(events, cfg, weights, as_of).persist(keep)
    users = build_id_map(named, "user_id", "user_idx", "first_ts").persist(keep)
    items = build_id_map(named, "item_id", "item_idx").persist(keep)
    pairs = index_interactions(named, users, items).persist(keep)
    pairs.count()  # materialise the indexed pairs, so `named` can go
    named.unpersist()
    return IndexedInteractions(pairs, users, items, cfg, weights)
