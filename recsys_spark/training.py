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


@dataclass
class EvaluationSet:
    """What scoring any model on one (train, test) pair needs, computed once: tuning scores every
    candidate against the same set."""

    train: DataFrame
    relevant: DataFrame  # user_idx, item_idx (persisted; `release` frees it)
    users: DataFrame  # user_idx of the evaluated users
    n_catalog: int

    def release(self) -> None:
        self.relevant.unpersist()


def evaluation_set(train: DataFrame, test: DataFrame, k: int) -> EvaluationSet:
    if k <= 0:
        raise RecsysError(f"train.k must be a positive integer, got {k}; try 10")
    relevant = relevant_items(train, test).persist(StorageLevel.MEMORY_AND_DISK)
    users = relevant.select("user_idx").distinct()
    if users.isEmpty():
        relevant.unpersist()
        raise RecsysError(
            "the test period has no users with training history and a new item: "
            "widen split.test_days or move split.cutoff earlier"
        )
    return EvaluationSet(train, relevant, users, train.select("item_idx").distinct().count())


def score(model: ALSModel, es: EvaluationSet, k: int, baseline: bool = True) -> Evaluation:
    """Metrics@k of `model` and (unless `baseline` is false, as in tuning) of the popularity baseline on `es`."""
    seen = es.train.select("user_idx", "item_idx")
    keep = StorageLevel.MEMORY_AND_DISK
    recs = als_top_n(model, es.users, seen, k).persist(keep)
    per_user = per_user_metrics(recs, es.relevant, k).persist(keep)
    metrics = summarize(per_user, recs, es.n_catalog, k)  # materialises the cached per_user
    recs.unpersist()
    if baseline:
        base = top_n_popular(es.users, popularity(es.train), seen, k).persist(keep)  # read twice by summarize
        metrics |= summarize(per_user_metrics(base, es.relevant, k), base, es.n_catalog, k, prefix="baseline_")
        base.unpersist()
    return Evaluation(metrics, per_user)


def evaluate(model: ALSModel, train: DataFrame, test: DataFrame, k: int, baseline: bool = True) -> Evaluation:
    """Metrics@k of `model` (and the popularity baseline) on the users with training history and a new test item."""
    es = evaluation_set(train, test, k)
    try:
        return score(model, es, k, baseline)
    finally:
        es.release()


def tune(train: DataFrame, validation: DataFrame, als: ALSConfig, grid: TuneConfig, implicit: bool, k: int) -> tuple[dict, list[dict]]:
    """Fit every grid candidate on `train`, score it on `validation`; return the best and all rows."""
    candidates = list(itertools.product(grid.rank, grid.reg_param, grid.alpha if implicit else [als.alpha]))
    if not candidates:
        raise RecsysError("tune: the grid is empty; give tune.rank, tune.reg_param and tune.alpha at least one value each")
    key = f"{grid.metric}_at_{k}"
    rows = []
    es = evaluation_set(train, validation, k)
    for i, (rank, reg, alpha) in enumerate(candidates, 1):
        t0 = time.perf_counter()
        model = fit_als(train, als, implicit, rank=rank, reg_param=reg, alpha=alpha)
        result = score(model, es, k, baseline=False)  # only the ALS metric picks a candidate
        rows.append({"candidate": i, "rank": rank, "reg_param": reg, "alpha": alpha, key: result.metrics[key],
                     "seconds": round(time.perf_counter() - t0, 2)})
        log.info("[train] tuning %d/%d: rank=%d reg_param=%g alpha=%g -> %s=%.4f", i, len(candidates), rank, reg, alpha, key, result.metrics[key])
        result.per_user.unpersist()
    es.release()
    best = max(rows, key=lambda r: (r[key], -r["candidate"]))
    return {"rank": best["rank"], "reg_param": best["reg_param"], "alpha": best["alpha"]}, rows
