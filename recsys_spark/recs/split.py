"""Train/test splits: temporal (default, no leakage from the future) and random per user, and the
validation slice tuning scores candidates on, cut from the training side only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.config import SplitConfig
from recsys_spark.recs.interactions import IndexedInteractions
from recsys_spark.results import SplitInfo


def unit_hash(column: str, seed: int) -> Column:
    """A number in [0, 1) per value of `column`, fixed by `seed`: samples users or items without a
    shuffle, the same way on any partitioning."""
    return F.xxhash64(column, F.lit(seed)).bitwiseAND(F.lit(0x7FFFFFFF)) / F.lit(float(2**31))


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
    """Midnight starting the test horizon: the last `test_days` days before the follow-up days.

    >>> default_cutoff(dt.datetime(2026, 1, 31, 18, 30), test_days=7)
    datetime.datetime(2026, 1, 25, 0, 0)
    >>> default_cutoff(dt.datetime(2026, 1, 31, 18, 30), test_days=7, followup_days=14)
    datetime.datetime(2026, 1, 11, 0, 0)
    """
    day = last_event.date() + dt.timedelta(days=1 - test_days - followup_days)
    return dt.datetime.combine(day, dt.time())


@dataclass
class Splits:
    """Indexed pairs for evaluation (train, test) and for tuning (tune_train, tune_val)."""

    train: DataFrame  # persisted; `release` frees it
    test: DataFrame
    tune_train: DataFrame
    tune_val: DataFrame
    info: SplitInfo

    def release(self) -> None:
        for df in (self.train, self.tune_train):
            df.unpersist()


def make_splits(
    events: DataFrame, data: IndexedInteractions, sp: SplitConfig, validation_days: int, last: dt.datetime
) -> Splits:
    """Temporal: train before the cutoff, test in [cutoff, cutoff + test_days), tuning validates on
    the last `validation_days` before the cutoff. Random: per-user holdout of the indexed pairs,
    and the same again inside the training side for tuning."""
    keep = StorageLevel.MEMORY_AND_DISK
    if sp.method == "temporal":
        cutoff = (
            dt.datetime.combine(sp.cutoff, dt.time())
            if sp.cutoff
            else default_cutoff(last, sp.test_days, sp.followup_days)
        )
        train_ev, test_ev = temporal_split(events, cutoff, sp.test_days)
        vcut = cutoff - dt.timedelta(days=validation_days)
        fit_ev, val_ev = temporal_split(train_ev, vcut, validation_days)
        test_end = cutoff + dt.timedelta(days=sp.test_days)
        info = SplitInfo(
            "temporal", cutoff=cutoff, test_end=test_end, followup_end=test_end + dt.timedelta(days=sp.followup_days)
        )
        return Splits(
            data.pairs_for(train_ev, cutoff).persist(keep),
            data.pairs_for(test_ev, cutoff),
            data.pairs_for(fit_ev, vcut),
            data.pairs_for(val_ev, cutoff),
            info,
        )
    train, test = random_split(data.pairs, sp.test_fraction, sp.seed)
    train = train.persist(keep)
    tune_train, tune_val = random_split(train, sp.test_fraction, sp.seed + 1)
    return Splits(train, test, tune_train, tune_val, SplitInfo("random", test_fraction=sp.test_fraction))
