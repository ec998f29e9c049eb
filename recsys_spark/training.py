"""Evaluate ALS beside the popularity baseline, and tune ALS on a validation slice.

Everything here takes DataFrames of indexed interactions (user_idx, item_idx, confidence); what
comes back to the driver is one row of means per model and one row per tuning candidate.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from .config import ALSConfig, TuneConfig
from .errors import RecsysError
from .evaluation import per_user_metrics, relevant_items, summarize
from .model import fit_als
from .topn import popularity, top_n, top_n_popular

log = logging.getLogger("recsys_spark")


@dataclass
class Evaluation:
    metrics: dict[str, float]  # ALS metrics, then the same with `baseline_`
    per_user: DataFrame  # user_idx, n_relevant, hits, precision, recall, ndcg, map, hit_rate (ALS)


def als_top_n(model: ALSModel, users: DataFrame, seen: DataFrame, n: int) -> DataFrame:
    """Top-n for `users` (user_idx) from a fitted model, seen pairs excluded."""
    factors = model.userFactors.join(users.select(F.col("user_idx").alias("id")), "id")
    return top_n(factors, model.itemFactors, seen, n)


def evaluate(model: ALSModel, train: DataFrame, test: DataFrame, k: int, baseline: bool = True) -> Evaluation:
    """Metrics@k of `model` and (unless `baseline` is false, as in tuning) of the popularity baseline on the same users."""
    if k <= 0:
        raise RecsysError(f"train.k must be a positive integer, got {k}; try 10")
    relevant = relevant_items(train, test).persist(StorageLevel.MEMORY_AND_DISK)
    users = relevant.select("user_idx").distinct()
    if users.isEmpty():
        raise RecsysError(
            "the test period has no users with training history and a new item: "
            "widen split.test_days or move split.cutoff earlier"
        )
    seen = train.select("user_idx", "item_idx")
    n_catalog = train.select("item_idx").distinct().count()
    recs = als_top_n(model, users, seen, k).persist(StorageLevel.MEMORY_AND_DISK)
    per_user = per_user_metrics(recs, relevant, k).persist(StorageLevel.MEMORY_AND_DISK)
    metrics = summarize(per_user, recs, n_catalog, k)  # materialises the cached per_user
    if baseline:
        base = top_n_popular(users, popularity(train), seen, k)
        metrics |= summarize(per_user_metrics(base, relevant, k), base, n_catalog, k, prefix="baseline_")
    recs.unpersist()
    relevant.unpersist()
    return Evaluation(metrics, per_user)


def tune(train: DataFrame, validation: DataFrame, als: ALSConfig, grid: TuneConfig, implicit: bool, k: int) -> tuple[dict, list[dict]]:
    """Fit every grid candidate on `train`, score it on `validation`; return the best and all rows."""
    candidates = list(itertools.product(grid.rank, grid.reg_param, grid.alpha if implicit else [als.alpha]))
    if not candidates:
        raise RecsysError("tune: the grid is empty; give tune.rank, tune.reg_param and tune.alpha at least one value each")
    key = f"{grid.metric}_at_{k}"
    rows = []
    for i, (rank, reg, alpha) in enumerate(candidates, 1):
        t0 = time.perf_counter()
        model = fit_als(train, als, implicit, rank=rank, reg_param=reg, alpha=alpha)
        result = evaluate(model, train, validation, k, baseline=False)  # only the ALS metric picks a candidate
        rows.append({"candidate": i, "rank": rank, "reg_param": reg, "alpha": alpha, key: result.metrics[key],
                     "seconds": round(time.perf_counter() - t0, 2)})
        log.info("[train] tuning %d/%d: rank=%d reg_param=%g alpha=%g -> %s=%.4f", i, len(candidates), rank, reg, alpha, key, result.metrics[key])
        result.per_user.unpersist()
    best = max(rows, key=lambda r: (r[key], -r["candidate"]))
    return {"rank": best["rank"], "reg_param": best["reg_param"], "alpha": best["alpha"]}, rows
