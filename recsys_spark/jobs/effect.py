"""effect: what the served recommendations did, treatment vs control, for one served run.

Reads the run's `assignments` (the exposure log recommend writes) and the events after its
serving date; writes `effect/estimates` (one row per outcome, window and cohort: `all` and each
first-activity cohort with Benjamini-Hochberg q-values) and `effect/arms` (arm sizes and the
sample-ratio check), both partitioned by served_date. See effect.py for the estimator.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.analytics.arms import CONTROL, TREATMENT
from recsys_spark.analytics.estimator import (
    ALL,
    OUTCOMES,
    arm_pairs,
    benjamini_hochberg,
    estimate,
    moments,
    outcome,
    sample_ratio,
    user_outcomes,
)
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.mlops import tracking
from recsys_spark.results import EffectResult

log = logging.getLogger("recsys_spark")


def effect(spark: SparkSession, cfg: Config) -> EffectResult:
    arms_path = cfg.path(names.ASSIGNMENTS)
    if not path_exists(spark, arms_path):
        raise RecsysError(f"no served run: {arms_path} does not exist; run `recsys-spark recommend` first")
    assignments = read_table(spark, arms_path)
    served, run_id = _served_run(assignments, cfg)
    assignments = assignments.where(F.col("run_date") == F.lit(served))
    events = read_table(spark, cfg.path(names.EVENTS))
    data_end = events.agg(F.max("event_date")).first()[0]
    if data_end is None or data_end <= served:
        raise RecsysError(
            f"no follow-up data: the events end {data_end} and run {run_id} served on {served}; ingest the days "
            f"after {served} first (the shortest window, {min(cfg.effect.windows)} days, needs events to "
            f"{served + dt.timedelta(days=min(cfg.effect.windows))})"
        )
    windows = [w for w in sorted(set(cfg.effect.windows)) if served + dt.timedelta(days=w) <= data_end]
    pending = [w for w in sorted(set(cfg.effect.windows)) if w not in windows]
    sizes = {r["arm"]: r["count"] for r in assignments.groupBy("arm").count().collect()}
    if not sizes.get(CONTROL):
        raise RecsysError(
            f"run {run_id} (served {served}) has no control users: set recommend.holdout.fraction (e.g. 0.1) and "
            "recommend.holdout.salt, recommend again, and measure after the follow-up window"
        )
    # The fraction the run served with (older runs' rows lack it: the configured one).
    fraction = (
        float(assignments.select(F.max("fraction")).first()[0])
        if "fraction" in assignments.columns
        else cfg.recommend.holdout.fraction
    )
    chi2, p_srm = sample_ratio(sizes.get(TREATMENT, 0), sizes[CONTROL], fraction) if fraction > 0 else (0.0, 1.0)
    rows = []
    if windows:
        per_user = user_outcomes(
            assignments,
            events,
            served,
            windows,
            cfg.effect.pre_days,
            cfg.effect.purchase_types,
            cfg.retention.granularity,
        ).persist(StorageLevel.MEMORY_AND_DISK)
        columns = [outcome(o, w) for w in windows for o in OUTCOMES]
        try:
            overall = arm_pairs(moments(per_user, columns, by_cohort=False), by_cohort=False)
            cohorts = arm_pairs(moments(per_user, columns, by_cohort=True), by_cohort=True)
        finally:
            per_user.unpersist()
        for w in windows:
            for o in OUTCOMES:
                rows += _rows(overall, outcome(o, w), o, w, q_values=False)
                rows += _rows(cohorts, outcome(o, w), o, w, q_values=True)
    result = EffectResult(
        served_date=served,
        run_id=run_id,
        data_end=data_end,
        arms={TREATMENT: sizes.get(TREATMENT, 0), CONTROL: sizes[CONTROL]},
        fraction=fraction,
        srm_chi2=chi2,
        srm_p_value=p_srm,
        estimates=rows,
        not_observable=pending,
        paths={"estimates": cfg.path(names.EFFECT_ESTIMATES), "arms": cfg.path(names.EFFECT_ARMS)},
    )
    _write(spark, cfg, result)
    return result


def _served_run(assignments, cfg: Config) -> tuple[dt.date, str]:
    """(serving date, run id) of --run-id, --served-date, or the latest served run."""
    e = cfg.effect
    runs = assignments.select("run_date", "run_id").distinct()
    if e.run_id:
        runs = runs.where(F.col("run_id") == e.run_id)
    if e.served_date:
        runs = runs.where(F.col("run_date") == F.lit(e.served_date))
    latest = runs.orderBy(F.desc("run_date"), F.desc("run_id")).first()
    if latest is None:
        asked = f"run {e.run_id}" if e.run_id else f"served date {e.served_date}"
        raise RecsysError(f"no served run matches {asked} in {cfg.path('assignments')}: pass one recommend wrote")
    return latest["run_date"], latest["run_id"]


def _rows(pairs: dict, column: str, name: str, window: int, q_values: bool) -> list[dict]:
    out = []
    for cohort, (t, c) in pairs.items():
        est = estimate(t, c, column)
        if est is not None:
            out.append({"outcome": name, "window_days": window, "cohort": cohort, **dataclasses.asdict(est)})
    if q_values:
        for row, q in zip(out, benjamini_hochberg([r["p_value"] for r in out]), strict=True):
            row["q_value"] = q
    return out


def _write(spark: SparkSession, cfg: Config, result: EffectResult) -> None:
    estimates = pd.DataFrame(result.estimates)
    if not estimates.empty:
        if "q_value" not in estimates:
            estimates["q_value"] = float("nan")
        estimates["q_value"] = estimates["q_value"].where(estimates["cohort"] != ALL)
        estimates["run_id"] = result.run_id
        estimates["served_date"] = result.served_date
        write_table(spark.createDataFrame(estimates), cfg.path(names.EFFECT_ESTIMATES), names.SERVED_DATE)
        tracking.log_bytes(estimates.to_csv(index=False).encode(), "effect/estimates.csv")
    arms = pd.DataFrame(
        [
            {
                "arm": arm,
                "users": n,
                "expected_share": result.fraction if arm == CONTROL else 1 - result.fraction,
                "srm_chi2": result.srm_chi2,
                "srm_p_value": result.srm_p_value,
                "served_date": result.served_date,
                "run_id": result.run_id,
            }
            for arm, n in result.arms.items()
        ]
    )
    write_table(spark.createDataFrame(arms), cfg.path(names.EFFECT_ARMS), names.SERVED_DATE)
    tracking.log_bytes(arms.to_csv(index=False).encode(), "effect/arms.csv")
    tracking.log_params(
        {
            "effect_served_date": str(result.served_date),
            "effect_served_run_id": result.run_id,
            "effect_not_observable": ",".join(map(str, result.not_observable)),
        }
    )
