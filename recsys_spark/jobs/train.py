"""train: clean events -> interactions -> (tuned) ALS, evaluated against popularity; model and eval tables."""

from __future__ import annotations

import logging

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from .. import schema as S
from .. import tracking
from ..config import Config
from ..errors import RecsysError
from ..interactions import prepare_interactions
from ..model import TrainedModel, save_model, seen_pairs
from ..results import SplitInfo, TrainResult
from ..split import make_splits
from ..tables import local_dir, read_table, write_table, write_text
from ..timing import Stopwatch
from ..topn import popularity
from ..training import Evaluation, fit_and_evaluate
from .dataset import log_events_tags

log = logging.getLogger("recsys_spark")


def train(spark: SparkSession, cfg: Config) -> TrainResult:
    events = read_table(spark, cfg.path("events")).select(*S.EVENT_COLUMNS)
    last = events.agg(F.max("event_ts")).first()[0]
    if last is None:
        raise RecsysError(f"no clean events in {cfg.path('events')}: run `recsys-spark ingest` first")
    log_events_tags(spark, cfg, events)
    clock = Stopwatch("train")
    clock.start("prepare")
    below = None
    if cfg.interactions.min_value is not None:
        below = events.where(~F.coalesce(F.col("value") >= cfg.interactions.min_value, F.lit(False))).count()
        log.info(
            "[train] interactions.min_value=%g leaves out %d events (value below it, or none)",
            cfg.interactions.min_value,
            below,
        )
    data = prepare_interactions(events, cfg.interactions, cfg.events.weights, last)
    n_users, n_items, n_pairs = data.users.count(), data.items.count(), data.pairs.count()
    log.info(
        "[train] %d interactions, %d users, %d items (%s feedback)", n_pairs, n_users, n_items, cfg.interactions.mode
    )
    splits = make_splits(events, data, cfg.split, cfg.tune.validation_days, last)
    log.info(
        "[train] %d training interactions", splits.train.count()
    )  # cached here, so the fit's seconds are the fit's
    trained = fit_and_evaluate(splits, data, cfg, clock)
    tracking.log_trials(trained.tuning, f"{cfg.tune.metric}_at_{cfg.train.k}")
    clock.start("save")
    seen = trained.seen
    implicit = cfg.interactions.mode == "implicit"
    bundle = TrainedModel(
        trained.served,
        data.users,
        data.items,
        seen_pairs(seen, cfg.als, implicit, trained.chosen),
        popularity(seen),
        {
            **tracking.redact_nested(cfg.to_dict()),
            "chosen": trained.chosen,  # no secret in the model
            "mlflow_run_id": tracking.current_run_id(),
        },
    )
    save_model(bundle, cfg.path("model"))
    model_dir = local_dir(spark, cfg.path("model"))
    tracking.log_dir(model_dir, "model")
    metric = f"{cfg.tune.metric}_at_{cfg.train.k}"
    quality = trained.evaluation.metrics
    registry = tracking.register_model(
        model_dir, cfg.train.registered_model, metric, quality[metric], quality[f"baseline_{metric}"]
    )
    log.info("[train] %s", registry)
    tracking.log_params({f"chosen.{k}": v for k, v in trained.chosen.items()})
    per_user = trained.evaluation.per_user.join(data.users, "user_idx").select("*", *_followup_columns(splits.info))
    write_eval_tables(spark, cfg, trained.evaluation, trained.tuning, per_user)
    trained.evaluation.per_user.unpersist()  # free executor memory for the stages that follow
    splits.release()
    data.release()
    return TrainResult(
        interactions=n_pairs,
        users=n_users,
        items=n_items,
        split=splits.info,
        chosen_params=trained.chosen,
        quality=trained.evaluation.metrics,
        tuning=trained.tuning,
        steps=clock.stop(),
        by_history=trained.evaluation.by_history,
        events_below_min_value=below,
        registry=registry,
        paths={"model": cfg.path("model"), "eval": cfg.path("eval")},
    )


def _followup_columns(info: SplitInfo) -> list:
    """followup_start/followup_end timestamps for per-user rows (null for a random split): retention's
    came-back window."""
    return [
        F.lit(info.test_end).cast("timestamp").alias("followup_start"),
        F.lit(info.followup_end).cast("timestamp").alias("followup_end"),
    ]


def write_eval_tables(
    spark: SparkSession, cfg: Config, evaluation: Evaluation, tuning: list[dict], per_user: DataFrame
) -> None:
    """Metrics side by side (ALS | baseline), the same per history cohort, tuning trials, per-user ALS
    metrics (for cohorts)."""
    metrics = evaluation.metrics
    names = [m for m in metrics if not m.startswith("baseline_")]
    tables = {
        "metrics": pd.DataFrame(
            {"metric": names, "als": [metrics[m] for m in names], "baseline": [metrics[f"baseline_{m}"] for m in names]}
        ),
        "by_history": pd.DataFrame(
            [
                {
                    "history": r["history"],
                    "users": r["users"],
                    "metric": m,
                    "als": v,
                    "baseline": r.get(f"baseline_{m}"),
                }
                for r in evaluation.by_history
                for m, v in r.items()
                if m not in ("history", "users") and not m.startswith("baseline_")
            ]
        ),
        "tuning": pd.DataFrame(tuning),
    }
    for name, table in tables.items():
        if table.empty:
            continue
        write_table(spark.createDataFrame(table), cfg.path(f"eval/{name}"))
        write_text(spark, cfg.path(f"eval/{name}.csv"), table.to_csv(index=False))
        tracking.log_bytes(table.to_csv(index=False).encode(), f"eval/{name}.csv")
    write_table(per_user, cfg.path("eval/per_user"))
