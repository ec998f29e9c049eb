"""Fit, tune and evaluate ALS beside the popularity baseline, and decide what model serves.

Everything here takes DataFrames of indexed interactions (user_idx, item_idx, confidence); what
comes back to the driver is one row of means per model and one row per tuning candidate.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame

from .config import ALSConfig, Config, TuneConfig
from .errors import RecsysError
from .evaluation import per_user_metrics, relevant_items, summarize
from .interactions import IndexedInteractions
from .model import fit_als
from .split import Splits
from .timing import Stopwatch
from .topn import als_top_n, popularity, top_n_popular

log = logging.getLogger("recsys_spark")


@dataclass
class Evaluation:
    metrics: dict[str, float]  # ALS metrics, then the same with `baseline_`
    per_user: DataFrame  # user_idx, n_relevant, hits, precision, recall, ndcg, map, hit_rate (ALS)


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


@dataclass
class Trained:
    """What training produced: the evaluation of the model fitted before the cutoff, the chosen
    parameters, the tuning rows, and the model that serves with the pairs it must not recommend."""

    evaluation: Evaluation
    chosen: dict[str, Any]
    tuning: list[dict[str, Any]]
    served: ALSModel
    seen: DataFrame  # user_idx, item_idx, ... of the pairs `served` was fitted on


def serving_pairs(splits: Splits, data: IndexedInteractions, refit_on_all: bool) -> DataFrame:
    """The pairs the served model is fitted on: all interactions (refit), or the training side."""
    return data.pairs if refit_on_all else splits.train


def fit_and_evaluate(splits: Splits, data: IndexedInteractions, cfg: Config, clock: Stopwatch | None = None) -> Trained:
    """Tune (if enabled) on the validation slice, fit on the training side, evaluate on the test
    side beside popularity, then refit on everything when `train.refit_on_all` says so."""
    clock = clock or Stopwatch("train")
    implicit, k = cfg.interactions.mode == "implicit", cfg.train.k
    params: dict[str, Any] = {}
    tuning: list[dict[str, Any]] = []
    if cfg.tune.enabled:
        clock.start("tune")
        if splits.tune_train.persist(StorageLevel.MEMORY_AND_DISK).isEmpty():
            raise RecsysError(
                f"tuning has no training data before the validation slice ({cfg.tune.validation_days} days before the cutoff): "
                "lower tune.validation_days or split.test_days, or set tune.enabled=false"
            )
        params, tuning = tune(splits.tune_train, splits.tune_val, cfg.als, cfg.tune, implicit, k)
        log.info("[train] best candidate: %s", params)
    clock.start("als_fit")
    model = fit_als(splits.train, cfg.als, implicit, **params)
    clock.start("evaluate")
    evaluation = evaluate(model, splits.train, splits.test, k)
    seen = serving_pairs(splits, data, cfg.train.refit_on_all)
    served = model
    if cfg.train.refit_on_all:
        clock.start("refit")
        served = fit_als(seen, cfg.als, implicit, **params)
    chosen = {"rank": cfg.als.rank, "reg_param": cfg.als.reg_param, "alpha": cfg.als.alpha, **params}
    return Trained(evaluation, chosen, tuning, served, seen)
