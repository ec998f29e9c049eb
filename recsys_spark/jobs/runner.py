"""The stage plumbing shared by the CLI and the spark-submit entry points: the job registry, the
pipeline order, timing, and logging each stage's metrics to its MLflow run."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.errors import unreadable_file
from recsys_spark.infra import tables
from recsys_spark.jobs.effect import effect
from recsys_spark.jobs.evaluate_new_items import evaluate_new
from recsys_spark.jobs.generate import generate, generate_if_missing
from recsys_spark.jobs.ingest import ingest
from recsys_spark.jobs.items import items
from recsys_spark.jobs.recommend import recommend
from recsys_spark.jobs.retention import retention
from recsys_spark.jobs.simulate import simulate
from recsys_spark.jobs.stream import stream
from recsys_spark.jobs.train import train
from recsys_spark.mlops import tracking
from recsys_spark.mlops.report import write_report
from recsys_spark.results import RunResult, StageResult, TrainResult

log = logging.getLogger("recsys_spark")

Job = Callable[[SparkSession, Config], StageResult]
JOBS: dict[str, Job] = {
    "generate": generate,
    "ingest": ingest,
    "train": train,
    "recommend": recommend,
    "items": items,
    "retention": retention,
    "evaluate-new-items": evaluate_new,
    "effect": effect,
    "simulate": simulate,
    "stream": stream,
}
# `run`: the stages in order; generate only when there is no input yet.
PIPELINE: list[tuple[str, Job]] = [
    ("generate", generate_if_missing),
    ("ingest", ingest),
    ("train", train),
    ("recommend", recommend),
    ("items", items),
    ("retention", retention),
]


def timed(name: str, job: Job, spark: SparkSession, cfg: Config, position: str = "") -> StageResult:
    """Run one stage with start/end log lines (`position`: e.g. "stage 2/5"); its seconds go into its result."""
    log.info("[%s] started%s", name, f" ({position})" if position else "")
    t0 = time.perf_counter()
    try:
        result = job(spark, cfg)
    except Exception as e:
        unreadable = unreadable_file(e)
        if unreadable is None:
            raise
        raise unreadable from None
    result.seconds = round(time.perf_counter() - t0, 2)
    log.info("[%s] done in %.1f s", name, result.seconds)
    return result


def run_job(name: str, spark: SparkSession, cfg: Config, job: Job | None = None) -> RunResult:
    """One job (`JOBS[name]`, or `job` for one bound to command-line arguments), timed, its
    metrics logged to the active MLflow run."""
    tables.set_keep_versions(spark, cfg.output.keep_versions)
    run = RunResult({name: timed(name, job or JOBS[name], spark, cfg)})
    tracking.log_metrics(run.metrics())
    return run


def run_pipeline(spark: SparkSession, cfg: Config) -> RunResult:
    """Every stage in order, each in a nested MLflow run; the parent gets all metrics too."""
    tables.set_keep_versions(spark, cfg.output.keep_versions)
    run = RunResult()
    for i, (name, job) in enumerate(PIPELINE, 1):
        with tracking.tracked_run(cfg, name, nested=True):
            run.stages[name] = timed(name, job, spark, cfg, f"stage {i}/{len(PIPELINE)}")
            tracking.log_metrics(RunResult({name: run.stages[name]}).metrics())
    tracking.log_metrics(run.metrics())
    train_result = run.get(TrainResult)
    if train_result:
        tracking.log_params({f"chosen.{k}": v for k, v in train_result.chosen_params.items()})
    run_id = tracking.current_run_id()
    if run_id is not None:  # the report is built from what the run logged: nothing to show without tracking
        run.report = write_report(run_id, cfg.tracking.experiment, out_dir=cfg.reports_dir)
    return run
