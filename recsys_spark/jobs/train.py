"""train: clean events -> interactions -> (tuned) ALS and EASE, evaluated against popularity; the
family model.family picks serves; model and eval tables."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from pathlib import Path

import pandas as pd
import yaml
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import FIT_PARAMS, ALSConfig, Config
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.infra.filesystem import local_dir, write_text
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.infra.timing import Stopwatch
from recsys_spark.jobs.dataset import log_events_tags
from recsys_spark.mlops import registry, tracking
from recsys_spark.names import EASE
from recsys_spark.recs import ease
from recsys_spark.recs.filters import item_rules, rules_digest, rules_frame, with_typed_flag
from recsys_spark.recs.interactions import IndexedInteractions, prepare_interactions
from recsys_spark.recs.model import (
    Factors,
    TrainedModel,
    fit_als,
    fit_settings,
    fitted_on,
    load_model,
    save_model,
    saved_config,
    seen_pairs,
)
from recsys_spark.recs.promotion import HeadToHead, head_to_head, rekeyed, saw_test_window
from recsys_spark.recs.split import Splits, make_splits
from recsys_spark.recs.topn import popularity
from recsys_spark.recs.training import Evaluation, Trained, fit_and_evaluate
from recsys_spark.results import SplitInfo, TrainResult, TrainSkipped

log = logging.getLogger("recsys_spark")
ALS_FIELDS = {f.name for f in dataclasses.fields(ALSConfig)}


def train(spark: SparkSession, cfg: Config) -> TrainResult | TrainSkipped:
    events = read_table(spark, cfg.path(names.EVENTS)).select(*S.EVENT_COLUMNS)
    last, last_us, n_events = events.agg(F.max("event_ts"), F.max(F.unix_micros("event_ts")), F.count("*")).first()
    if last is None:
        raise RecsysError(f"no clean events in {cfg.path('events')}: run `recsys-spark ingest` first")
    until = utc_iso(last_us)  # the newest event (UTC)
    settings = fit_settings(tracking.redact_nested(cfg.to_dict()))
    if cfg.train.if_changed and unchanged_since_fit(spark, cfg, until, n_events, settings):
        log.info("[train] skipped: the saved model was fitted on these %d events (newest %s)", n_events, until)
        return TrainSkipped(model=cfg.path(names.MODEL), events=n_events, data_until=until)
    dataset = log_events_tags(spark, cfg, events)
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
    rules = item_rules(spark, cfg, data.items)  # recommend's item rules: evaluated, and saved for the pyfunc
    trained = fit_and_evaluate(splits, data, cfg, clock, rules)
    tracking.log_trials(trained.tuning, f"{cfg.tune.metric}_at_{cfg.train.k}")
    clock.start("save")
    seen = trained.seen
    implicit = cfg.interactions.mode == "implicit"
    saved_seen = seen_pairs(seen, cfg.als, implicit, trained.chosen)
    if isinstance(cfg.recommend.exclude_seen, list):  # which pairs the pyfunc masks
        saved_seen = with_typed_flag(saved_seen, events, data.users, data.items, cfg.recommend.exclude_seen)
    bundle = TrainedModel(
        trained.served,
        data.users,
        data.items,
        saved_seen,
        popularity(seen),
        {
            **tracking.redact_nested(cfg.to_dict()),
            "chosen": trained.chosen,  # no secret in the model
            "family": trained.family,
            **(trained.ease.setting.saved() if trained.ease else {}),
            "mlflow_run_id": tracking.current_run_id(),
            # the newest event the served model saw: what recommend --fold-in counts as new behaviour
            "data_until": until if cfg.train.refit_on_all or splits.info.cutoff is None else served_until(splits),
            "events_until": until,  # with data_events and the fit settings, what train.if_changed compares
            "data_events": n_events,
            "rules_digest": rules_digest(rules, cfg.recommend.exclude_seen),  # also compared by if_changed
        },
        ease.weights_frame(spark, trained.ease.served) if trained.ease and trained.ease.served else None,
        rules_frame(spark, rules) if rules else None,
    )
    save_model(bundle, cfg.path(names.MODEL))
    model_dir = local_dir(spark, cfg.path(names.MODEL))
    tracking.log_dir(model_dir, "model")
    metric = f"{cfg.tune.metric}_at_{cfg.train.k}"
    score, baseline = trained.test_metrics()[metric], trained.evaluation.metrics[f"baseline_{metric}"]
    clock.start("register")  # the champion on this split, then the Model Registry
    head = challenge(spark, cfg, dataset, splits, data, trained) if score > baseline else None
    registered = registry.register_model(
        model_dir,
        cfg.train.registered_model,
        metric,
        score,
        baseline,
        dataset,
        head,
        cfg.registry,
    )
    log.info("[train] %s", registered)
    tracking.log_tags({"model_registry": registered, "model_family": trained.family})  # the report's model line
    tracking.log_params({f"chosen.{k}": v for k, v in trained.chosen.items()})
    per_user = trained.evaluation.per_user.join(data.users, "user_idx").select("*", *_followup_columns(splits.info))
    ease_metrics = trained.ease.evaluation.metrics if trained.ease else None
    write_eval_tables(spark, cfg, trained.evaluation, trained.tuning, per_user, ease_metrics)
    trained.release()  # free executor memory for the stages that follow
    splits.release()
    data.release()
    return TrainResult(
        interactions=n_pairs,
        users=n_users,
        items=n_items,
        split=splits.info,
        chosen_params=trained.chosen,
        quality=trained.evaluation.metrics,
        ruled=trained.evaluation.ruled | (trained.ease.evaluation.ruled if trained.ease else {}),
        tuning=trained.tuning,
        steps=clock.stop(),
        by_history=trained.evaluation.by_history,
        events_below_min_value=below,
        registry=registered,
        ease=trained.ease.evaluation.metrics | trained.ease.setting.saved() if trained.ease else {},
        ease_validation={s.label: v for s, v in trained.ease.validation.items()} if trained.ease else {},
        family=trained.family,
        validation={f"validation_{f}_{metric}": v for f, v in trained.validation.items()},
        paths={"model": cfg.path(names.MODEL), "eval": cfg.path(names.EVAL)},
    )


def unchanged_since_fit(spark: SparkSession, cfg: Config, until: str, n_events: int, settings: dict) -> bool:
    """train.if_changed's test: the saved model was fitted on these events (`until`, `n_events`)
    with these fit `settings`, and what it saved for the pyfunc beside the fit (item rules,
    exclude_seen) is what recommend's settings and item table give now, over its own items."""
    saved = saved_config(spark, cfg.path(names.MODEL))
    if not fitted_on(saved, until, n_events, settings):
        return False
    items = spark.read.parquet(f"{cfg.path(names.MODEL)}/items")
    return saved.get("rules_digest") == rules_digest(item_rules(spark, cfg, items), cfg.recommend.exclude_seen)


def utc_iso(micros: int) -> str:
    """Microseconds since the epoch as an ISO 8601 UTC timestamp."""
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)).isoformat()


def served_until(splits: Splits) -> str:
    """With train.refit_on_all false the served model saw the events before the cutoff only (a
    naive local datetime, as Spark collects them): the instant just before it, in UTC."""
    return utc_iso(round(splits.info.cutoff.timestamp() * 1_000_000) - 1)


def challenge(
    spark: SparkSession,
    cfg: Config,
    dataset: dict[str, str],
    splits: Splits,
    data: IndexedInteractions,
    trained: Trained,
) -> HeadToHead | None:
    """The current champion (of the same input) scored on this run's test split, or None without
    one. Its own model when its data ends before this split's cutoff; else its parameters refit on
    this split's training side (its model saw these test pairs)."""
    champion = registry.champion_version(cfg.train.registered_model, dataset.get("dataset_input"))
    if champion is None:
        return None
    refit = saw_test_window(champion.tags.get("data_last_date"), splits.info)
    source = f"runs:/{champion.run_id}/model"
    try:
        saved = yaml.safe_load(Path(registry.download_model(f"{source}/config.yaml")).read_text())
        if refit and saved.get("family") == EASE:  # its setting, fitted on this run's training pairs
            model: Factors | ease.Weights = ease.fit(splits.train, ease.Setting.of_model(saved), cfg.ease.max_items)
        elif refit:  # its ALS settings and chosen parameters, fitted on this run's training pairs
            als = dataclasses.replace(
                cfg.als, **{k: v for k, v in saved.get("als", {}).items() if k in ALS_FIELDS and k not in FIT_PARAMS}
            )
            implicit = saved.get("interactions", {}).get("mode", cfg.interactions.mode) == "implicit"
            model = fit_als(splits.train, als, implicit, **saved["chosen"])
        else:
            own = load_model(spark, registry.download_model(source))
            model = (
                ease.rekeyed(ease.from_frame(own.ease), own.items, data.items)
                if own.ease is not None
                else rekeyed(own, data.users, data.items)
            )
        head = head_to_head(
            model,
            trained.test_per_user(),
            splits.train,
            splits.test,
            cfg.train.k,
            cfg.tune.metric,
            refit,
            cfg.registry.bootstrap,
            cfg.als.seed,
        )
    except Exception as e:  # noqa: BLE001 (the comparison is optional: any failure falls back, with a warning)
        log.warning(
            "[train] champion v%s cannot be scored on this split (%s: %s): its logged number is the bar",
            champion.version,
            type(e).__name__,
            str(e).splitlines()[0][:300] if str(e) else "",
        )
        return None
    log.info("[train] champion v%s %s", champion.version, head.describe() if head else "scores none of the test users")
    return head


def _followup_columns(info: SplitInfo) -> list:
    """followup_start/followup_end timestamps for per-user rows (null for a random split): retention's
    came-back window."""
    return [
        F.lit(info.test_end).cast("timestamp").alias("followup_start"),
        F.lit(info.followup_end).cast("timestamp").alias("followup_end"),
    ]


def write_eval_tables(
    spark: SparkSession,
    cfg: Config,
    evaluation: Evaluation,
    tuning: list[dict],
    per_user: DataFrame,
    ease_metrics: dict[str, float] | None = None,
) -> None:
    """Metrics side by side (ALS | baseline, and EASE's on the same users when it ran: null where
    it has no such metric), the same per history cohort, tuning trials, per-user ALS metrics (for
    cohorts)."""
    metrics = evaluation.metrics
    shown = [m for m in metrics if not m.startswith("baseline_")]
    side = {"metric": shown, "als": [metrics[m] for m in shown], "baseline": [metrics[f"baseline_{m}"] for m in shown]}
    if ease_metrics:
        side["ease"] = [ease_metrics.get(f"ease_{m}") for m in shown]
    tables = {
        "metrics": pd.DataFrame(side),
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
    write_table(per_user, cfg.path(names.PER_USER))
