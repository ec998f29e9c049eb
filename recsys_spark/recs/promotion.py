"""Promotion on the same data: the current champion scored on the challenger's test split.

The alias used to move when a new model's test metric beat the champion's logged one, measured on
another test window: an easy week blocked every later model and a hard one let a worse one through.
Here the champion's saved factors (or EASE weights) are re-keyed to the challenger's id maps and scored by the same
top-N and metric code on the same test users (those both models can score), with a paired
bootstrap interval of the per-user difference. When the champion's data reaches into the
challenger's test window (a refit on all data, or the same dataset trained again), its model has
seen the answers: its parameters are refit on the challenger's training side instead, which
compares the two configurations on the same data.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys_spark.recs.ease import Weights, ease_top_n
from recsys_spark.recs.evaluation import per_user_metrics, relevant_items
from recsys_spark.recs.model import Factors, TrainedModel
from recsys_spark.recs.topn import als_top_n
from recsys_spark.results import SplitInfo

# P(Poisson(1) <= k) for k = 0..7: a uniform draw below the k-th bound is a weight of k (8 beyond).
POISSON_1_CDF = tuple(sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)) for k in range(8))


@dataclass(frozen=True)
class HeadToHead:
    """The challenger and the champion on the challenger's test split, user by user."""

    metric: str  # e.g. ndcg_at_10
    users: int  # test users both models scored
    challenger: float
    champion: float
    low: float  # paired bootstrap 95% interval of challenger - champion
    high: float
    refit: bool  # the champion's parameters refit on this split: its own model saw this test window

    @property
    def difference(self) -> float:
        return self.challenger - self.champion

    def describe(self) -> str:
        how = (
            "the champion's parameters refit on this split (its model saw this test window)"
            if self.refit
            else ("the champion's own model")
        )
        return (
            f"on this run's test split ({self.users:,} users, {how}): {self.metric} {self.challenger:.4f} vs "
            f"{self.champion:.4f}, difference {self.difference:+.4f} (95% CI {self.low:+.4f} to {self.high:+.4f})"
        )

    def tags(self) -> dict[str, str]:
        """The comparison as model version tags."""
        return {
            "champion_compared_on": "refit_params" if self.refit else "model",
            "champion_compared_users": str(self.users),
            f"challenger_{self.metric}": f"{self.challenger:.6f}",
            f"champion_{self.metric}": f"{self.champion:.6f}",
            "difference_ci95": f"{self.low:.6f},{self.high:.6f}",
        }


def saw_test_window(last_date: str | None, info: SplitInfo) -> bool:
    """Whether a model trained on data up to `last_date` (a version's data_last_date tag) has seen
    the test pairs of `info`'s split: always for a random split, or when the date is unknown."""
    if info.method != "temporal" or info.cutoff is None or not last_date or last_date == "None":
        return True
    return dt.date.fromisoformat(last_date) >= info.cutoff.date()


def rekeyed(model: TrainedModel, users: DataFrame, items: DataFrame) -> Factors:
    """The model's factors under another run's user_idx / item_idx (`users`: user_id, user_idx;
    `items`: item_id, item_idx), joined by id; ids that run does not have are dropped."""

    def one(factors: DataFrame, own: DataFrame, other: DataFrame, key: str) -> DataFrame:
        idx = key.replace("_id", "_idx")
        return (
            factors.join(own.select(F.col(idx).alias("id"), key), "id")
            .drop("id")
            .join(other.select(key, F.col(idx).alias("id")), key)
            .select("id", "features")
        )

    als = model.als
    return Factors(
        one(als.userFactors, model.users, users, "user_id"), one(als.itemFactors, model.items, items, "item_id")
    )


def head_to_head(
    champion: Factors | Weights,
    challenger_per_user: DataFrame,
    train: DataFrame,
    test: DataFrame,
    k: int,
    measure: str,
    refit: bool,
    samples: int,
    seed: int,
) -> HeadToHead | None:
    """Score `champion` (ALS factors or EASE weights) on the users of `challenger_per_user`
    (user_idx and the metric column `measure`, e.g. ndcg) that it can score (ALS: has factors
    for), with the training pairs excluded as for the challenger; None when it can score none."""
    mine = challenger_per_user.select("user_idx", F.col(measure).alias("a"))
    seen = train.select("user_idx", "item_idx")
    if isinstance(champion, Weights):
        users = mine.select("user_idx")
        recs = ease_top_n(seen, users, champion.items, champion.b, k)
    else:
        users = mine.select("user_idx").join(champion.userFactors.select(F.col("id").alias("user_idx")), "user_idx")
        recs = als_top_n(champion, users, seen, k)
    relevant = relevant_items(train, test).join(users, "user_idx")
    theirs = per_user_metrics(recs, relevant, k).select("user_idx", F.col(measure).alias("b"))
    pairs = mine.join(theirs, "user_idx").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        row = pairs.agg(F.count("*"), F.avg("a"), F.avg("b")).first()
        if not row[0]:
            return None
        low, high = paired_bootstrap(pairs, samples, seed)
    finally:
        pairs.unpersist()
    return HeadToHead(f"{measure}_at_{k}", int(row[0]), float(row[1]), float(row[2]), low, high, refit)


def poisson_1(u: Column) -> Column:
    """A Poisson(1) draw from a uniform `u` by its inverse CDF."""
    out = F.lit(len(POISSON_1_CDF))
    for k in reversed(range(len(POISSON_1_CDF))):
        out = F.when(u < POISSON_1_CDF[k], F.lit(k)).otherwise(out)
    return out


def paired_bootstrap(pairs: DataFrame, samples: int, seed: int) -> tuple[float, float]:
    """The 95% percentile interval of mean(a - b) over `pairs` (user_idx, a, b), resampling users
    with Poisson(1) weights (a user's two scores stay together): one Spark aggregation, whatever
    the number of users, and `samples` rows to the driver. Seeded by a hash of (user, sample)."""
    u = F.xxhash64("user_idx", "s", F.lit(seed)).bitwiseAND(F.lit((1 << 53) - 1)).cast("double") / float(1 << 53)
    means = (
        pairs.select("user_idx", (F.col("a") - F.col("b")).alias("d"))
        .withColumn("s", F.explode(F.sequence(F.lit(1), F.lit(samples))))
        .withColumn("w", poisson_1(u))
        .groupBy("s")
        .agg(F.try_divide(F.sum(F.col("w") * F.col("d")), F.sum("w")).alias("mean"))  # null: no user drawn
        .collect()  # `samples` rows
    )
    values = np.array([r["mean"] for r in means if r["mean"] is not None])
    if not values.size:  # every resample drew no user: no interval
        return float("nan"), float("nan")
    low, high = np.quantile(values, [0.025, 0.975])
    return float(low), float(high)
