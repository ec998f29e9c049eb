"""ALS hyperparameter search: Optuna's TPE sampler, with successive halving on a user sample.

A trial samples the fit parameters (`config.FIT_PARAMS`) from `tune.space`, numbers on a log
scale, fits on the tuning side and is scored on a fixed sample of `tune.validation_users`
validation users. Trials are cheap on purpose: first each one fits on the `tune.rung_fraction`
of users whose hash falls below it, for that fraction of its iterations (at least 2), and Optuna's
SuccessiveHalvingPruner lets only the best 1/`tune.reduction_factor` of those first-rung scores go
on to the full fit on every user. Everything
the trials share (pairs, user samples, relevant items) is computed and cached once, and what each
trial caches is freed after it. The configured model is the first trial, so the search never
returns a model the configuration beats on validation, and `tune.seed_points` (known-good
regions) come next, so a small budget starts where ALS usually does well; the sampler is seeded, so the same data
and seed give the same trials (unless `tune.timeout_s` stops the study first).

Scoring a trial happens on the driver: the sampled users' factors, seen and relevant items are
bounded by `tune.validation_users` (not by users or events), and the item factors are the
catalogue, which `topn.top_n` broadcasts anyway. That replaces several Spark jobs per trial by two
small collects; `sample_metric` computes the same definitions as `evaluation.per_user_metrics`
(a test holds them equal).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd
from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import ALSConfig, SearchSpace, TuneConfig
from recsys_spark.errors import RecsysError
from recsys_spark.recs.evaluation import relevant_items
from recsys_spark.recs.kernels import block_rows, top_k_rows
from recsys_spark.recs.model import fit_als, fit_params
from recsys_spark.recs.split import unit_hash

log = logging.getLogger("recsys_spark")


@dataclass
class TuningData:
    """What every trial reads, computed once: the tuning-side pairs (and the first rung's share
    of them), and on the driver the sampled validation users with their seen and relevant items."""

    pairs: DataFrame  # user_idx, item_idx, confidence, ... (the tuning side of the split)
    rung_pairs: DataFrame | None  # pairs of the first rung's users (None: no rung)
    users: pd.DataFrame  # user_idx of the sampled validation users, in_rung
    seen: pd.DataFrame  # user_idx, item_idx: their tuning-side pairs
    relevant: pd.DataFrame  # user_idx, item_idx: their new validation items

    def release(self) -> None:
        if self.rung_pairs is not None:
            self.rung_pairs.unpersist()


def tuning_data(train: DataFrame, validation: DataFrame, tune: TuneConfig) -> TuningData:
    """Sample `tune.validation_users` users with training history and a new validation item (the
    smallest hashes), and mark the first rung's users (hash below `tune.rung_fraction`)."""
    in_rung = unit_hash("user_idx", tune.seed + 1) < F.lit(tune.rung_fraction)
    relevant = relevant_items(train, validation)
    candidates = relevant.select("user_idx").distinct().persist(StorageLevel.MEMORY_AND_DISK)
    # Spark's top-k keeps a queue of `limit` slots: never ask for more users than there are.
    n = min(tune.validation_users, candidates.count())
    users = (
        candidates.withColumn("_h", unit_hash("user_idx", tune.seed))
        .orderBy("_h", "user_idx")
        .limit(n)
        .select("user_idx", in_rung.alias("in_rung"))
    )
    sampled = (
        users.toPandas() if n else pd.DataFrame({"user_idx": [], "in_rung": []})
    )  # bounded by tune.validation_users
    candidates.unpersist()
    if sampled.empty:
        raise RecsysError(
            "tuning has no validation users "
            f"(training history and a new item in the {tune.validation_days} days before "
            "the cutoff): lower tune.validation_days or split.test_days, or set tune.enabled=false"
        )
    chosen = F.broadcast(train.sparkSession.createDataFrame(sampled[["user_idx"]].astype("int32")))
    seen = train.join(chosen, "user_idx").select("user_idx", "item_idx").toPandas()
    rel = relevant.join(chosen, "user_idx").select("user_idx", "item_idx").toPandas()
    rung = train.where(in_rung).persist(StorageLevel.MEMORY_AND_DISK) if tune.rung_fraction < 1 else None
    return TuningData(train, rung, sampled, seen, rel)


def _factors(df: DataFrame) -> tuple[np.ndarray, np.ndarray]:
    pdf = df.select("id", "features").toPandas()
    ids = pdf["id"].to_numpy(np.int64)
    return ids, (np.vstack(pdf["features"].to_numpy()).astype(np.float32) if len(pdf) else np.zeros((0, 1), np.float32))


def sample_metric(model: ALSModel, data: TuningData, k: int, metric: str, rung: bool = False) -> float:
    """Mean `metric`@k of `model` over the sampled validation users (the first rung's only, if
    `rung`), seen items excluded; a user the model has no factors for scores 0."""
    users = data.users[data.users["in_rung"]] if rung else data.users
    if users.empty:
        return 0.0
    spark = model.userFactors.sparkSession
    wanted = F.broadcast(spark.createDataFrame(users[["user_idx"]].rename(columns={"user_idx": "id"}).astype("int32")))
    uid, u = _factors(model.userFactors.join(wanted, "id"))
    item_ids, v = _factors(model.itemFactors)
    if not item_ids.size:
        return 0.0
    return float(
        np.mean(
            rank_metrics(users["user_idx"].to_numpy(np.int64), uid, u, item_ids, v, data.seen, data.relevant, k)[metric]
        )
    )


def rank_metrics(
    users: np.ndarray,
    uid: np.ndarray,
    u: np.ndarray,
    item_ids: np.ndarray,
    v: np.ndarray,
    seen: pd.DataFrame,
    relevant: pd.DataFrame,
    k: int,
) -> dict[str, np.ndarray]:
    """Per-user precision, recall, ndcg, map and hit_rate @k of the factors (uid, u) x (item_ids, v)
    for `users`, by the definitions in `evaluation`; users without factors get no recommendations."""
    row = pd.Series(np.arange(users.size), index=users)
    col = pd.Series(np.arange(item_ids.size), index=item_ids)
    at = row.reindex(uid).to_numpy()
    factors = np.zeros((users.size, v.shape[1]), np.float32)
    factors[at[~np.isnan(at)].astype(int)] = u[~np.isnan(at)]
    scored = np.zeros(users.size, bool)
    scored[at[~np.isnan(at)].astype(int)] = True
    s_rows, s_cols = row.reindex(seen["user_idx"]).to_numpy(), col.reindex(seen["item_idx"]).to_numpy()
    ok = ~np.isnan(s_rows) & ~np.isnan(s_cols)
    s_rows, s_cols = s_rows[ok].astype(int), s_cols[ok].astype(int)
    order = np.argsort(s_rows, kind="stable")
    s_rows, s_cols = s_rows[order], s_cols[order]
    kk = min(k, item_ids.size)
    span = int(max(item_ids.max(), relevant["item_idx"].max() if len(relevant) else 0)) + 1  # (row, item) -> one key
    r_rows = row.reindex(relevant["user_idx"]).to_numpy()
    ok = ~np.isnan(r_rows)  # relevant items of other users (outside the first rung) do not count
    keys = np.unique(r_rows[ok].astype(np.int64) * span + relevant["item_idx"].to_numpy(np.int64)[ok])
    n_rel = np.bincount(keys // span, minlength=users.size)
    hit = np.zeros((users.size, kk), bool)
    step = block_rows(item_ids.size)
    for start in range(0, users.size, step):  # blocks keep the score matrix small at any catalogue size
        end = min(start + step, users.size)
        scores = factors[start:end] @ v.T
        scores[~scored[start:end]] = -np.inf
        lo, hi = np.searchsorted(s_rows, [start, end])
        scores[s_rows[lo:hi] - start, s_cols[lo:hi]] = -np.inf
        top, top_scores = top_k_rows(scores, item_ids, kk)
        hit[start:end] = np.isin(np.arange(start, end)[:, None] * span + item_ids[top], keys) & np.isfinite(top_scores)
    ranks = np.arange(1, kk + 1)
    hits = hit.sum(axis=1)
    cut = np.minimum(n_rel, k)
    ideal = np.cumsum(1.0 / np.log2(np.arange(1, k + 1) + 1))[np.maximum(cut, 1) - 1]
    return {
        "precision": hits / k,
        "recall": hits / np.maximum(n_rel, 1),
        "ndcg": (hit / np.log2(ranks + 1)).sum(axis=1) / ideal,
        "map": (hit * np.cumsum(hit, axis=1) / ranks).sum(axis=1) / np.maximum(cut, 1),
        "hit_rate": (hits > 0).astype(float),
    }


def suggest(trial: optuna.Trial, space: SearchSpace, implicit: bool) -> dict[str, Any]:
    """One point of `space`: [low, high] numbers on a log scale ([v] fixed), choices by name."""

    def number(name: str, bounds: list) -> Any:
        lo, hi = bounds[0], bounds[-1]
        if lo == hi:
            return lo
        return (
            trial.suggest_int(name, lo, hi, log=True)
            if isinstance(lo, int)
            else trial.suggest_float(name, lo, hi, log=True)
        )

    p = {
        "rank": number("rank", space.rank),
        "reg_param": number("reg_param", space.reg_param),
        "max_iter": number("max_iter", space.max_iter),
    }
    if implicit:  # alpha and the confidence transform mean nothing to explicit ALS
        p["alpha"] = number("alpha", space.alpha)
        p["confidence"] = trial.suggest_categorical("confidence", space.confidence)
    p["min_value"] = trial.suggest_categorical("min_value", space.min_value)
    return p


def configured_point(als: ALSConfig, space: SearchSpace) -> dict[str, Any]:
    """The configured ALS parameters, clipped into `space`: the study's first trial."""
    point = {}
    for name, value in fit_params(als).items():
        bounds = getattr(space, name)
        if name in ("confidence", "min_value"):
            if value in bounds:
                point[name] = value
        elif bounds[0] != bounds[-1]:
            point[name] = min(max(value, bounds[0]), bounds[-1])
    return point


def first_points(als: ALSConfig, tune: TuneConfig) -> list[dict[str, Any]]:
    """The configured model, then each seed point over it, clipped into the space; repeats once."""
    out: list[dict[str, Any]] = []
    for seed in [None, *tune.seed_points]:
        given = {k: v for k, v in dataclasses.asdict(seed).items() if v is not None} if seed else {}
        point = configured_point(dataclasses.replace(als, **given), tune.space)
        if point not in out:
            out.append(point)
    return out


class _TrialCache:
    """Frees the RDDs a trial's fit cached (ALS keeps its factors persisted until told otherwise)."""

    def __init__(self, spark_context: Any) -> None:
        self._jsc = spark_context._jsc
        self._before = set(self._ids())

    def _ids(self) -> list[int]:
        return [int(i) for i in self._jsc.getPersistentRDDs().keySet()]

    def release(self) -> None:
        rdds = self._jsc.getPersistentRDDs()
        for i in set(self._ids()) - self._before:
            rdds[i].unpersist(False)


def search(
    data: TuningData,
    als: ALSConfig,
    tune: TuneConfig,
    implicit: bool,
    k: int,
    points: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the study; return the best complete trial's parameters and one row per trial.

    `points` are the first trials, in order (default: the configured model, then `tune.seed_points`,
    each clipped into the space, repeats dropped); the sampler takes over after them.
    """
    key = f"{tune.metric}_at_{k}"
    rung = data.rung_pairs is not None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=tune.seed, n_startup_trials=max(3, min(10, tune.trials // 3))),
        pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=tune.reduction_factor)
        if rung
        else optuna.pruners.NopPruner(),
    )
    for point in first_points(als, tune) if points is None else points:
        study.enqueue_trial(point)
    sc = data.pairs.sparkSession.sparkContext
    rows: list[dict[str, Any]] = []

    def objective(trial: optuna.Trial) -> float:
        p = suggest(trial, tune.space, implicit)
        row: dict[str, Any] = {"trial": trial.number + 1, **p, "state": "running"}
        rows.append(row)
        t0, cache = time.perf_counter(), _TrialCache(sc)
        shown = " ".join(f"{n}={v:g}" if isinstance(v, float) else f"{n}={v}" for n, v in p.items())
        try:
            if rung:
                short = {**p, "max_iter": max(2, round(p["max_iter"] * tune.rung_fraction))}
                first = sample_metric(fit_als(data.rung_pairs, als, implicit, **short), data, k, tune.metric, rung=True)
                row[f"rung_{key}"] = first
                trial.report(first, 1)
                if trial.should_prune():
                    row.update(state="pruned", seconds=round(time.perf_counter() - t0, 2))
                    log.info(
                        "[train] trial %d/%d: %s -> first rung %s=%.4f, pruned (%.1f s)",
                        trial.number + 1,
                        tune.trials,
                        shown,
                        key,
                        first,
                        row["seconds"],
                    )
                    raise optuna.TrialPruned()
            value = sample_metric(fit_als(data.pairs, als, implicit, **p), data, k, tune.metric)
        finally:
            cache.release()
        row.update({key: value, "state": "complete", "seconds": round(time.perf_counter() - t0, 2)})
        log.info(
            "[train] trial %d/%d: %s -> %s=%.4f (%.1f s)",
            trial.number + 1,
            tune.trials,
            shown,
            key,
            value,
            row["seconds"],
        )
        return value

    study.optimize(objective, n_trials=tune.trials, timeout=tune.timeout_s)
    done = [r for r in rows if r["state"] == "complete"]
    if not done:
        raise RecsysError(
            f"tuning finished no trial within tune.timeout_s={tune.timeout_s}: "
            "raise it, or leave it null and set tune.trials"
        )
    best = max(done, key=lambda r: (r[key], -r["trial"]))
    return {n: best[n] for n in fit_params(als) if n in best}, rows
