"""Train/test splits: temporal (default, no leakage from the future) and random per user."""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F


def temporal_split(events: DataFrame, cutoff: dt.datetime, test_days: int) -> tuple[DataFrame, DataFrame]:
    """Events before `cutoff` train; events in [cutoff, cutoff + test_days) test."""
    end = cutoff + dt.timedelta(days=test_days)
    ts = F.col("event_ts")
    return events.where(ts < F.lit(cutoff)), events.where((ts >= F.lit(cutoff)) & (ts < F.lit(end)))


def random_split(interactions: DataFrame, test_fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Hold out round(test_fraction x n) of each user's n interactions, chosen by a seeded hash.

    The hash of (user, item, seed) orders each user's items, so the split does not depend on how
    the data is partitioned.
    """
    w = Window.partitionBy("user_idx")
    order = Window.partitionBy("user_idx").orderBy(F.xxhash64("user_idx", "item_idx", F.lit(seed)), "item_idx")
    marked = interactions.withColumn("_n", F.count("*").over(w)).withColumn("_r", F.row_number().over(order))
    held = F.col("_r") <= F.floor(F.col("_n") * test_fraction + 0.5)
    return marked.where(~held).drop("_n", "_r"), marked.where(held).drop("_n", "_r")


def default_cutoff(last_event: dt.datetime, test_days: int, followup_days: int = 0) -> dt.datetime:
    """Midnight starting the test horizon: the last `test_days` days before the follow-up days."""
    day = last_event.date() + dt.timedelta(days=1 - test_days - followup_days)
    return dt.datetime.combine(day, dt.time())
