"""The jobs' bodies: read inputs, call the library, write outputs, return a summary dict.

This is the I/O edge shared by the CLI and the spark-submit entry points in `jobs/`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from . import schema as S
from . import tracking
from .config import Config
from .errors import RecsysError
from .generate import generate_events
from .ingest import check_source_columns, clean_events, quarantine_rows, validate_events
from .interactions import build_id_map, build_interactions, index_interactions
from .model import TrainedModel, fit_als, load_model, save_model
from .sources import read_source
from .split import default_cutoff, random_split, temporal_split
from .plots import curves_png, heatmap_png, retention_matrix
from .retention import check_granularity, cohort_retention, quality_by_cohort, stickiness, user_activity
from .tables import list_names, local_dir, path_exists, read_table, write_bytes, write_table, write_text
from .topn import popularity
from .training import als_top_n, evaluate, tune

log = logging.getLogger("recsys_spark")

Summary = dict[str, Any]


def timed(name: str, fn: Callable[[SparkSession, Config], Summary], spark: SparkSession, cfg: Config) -> Summary:
    """Run one stage with start/end log lines; its seconds go into the summary."""
    log.info("[%s] started", name)
    t0 = time.perf_counter()
    out = fn(spark, cfg)
    out[f"seconds_{name}"] = round(time.perf_counter() - t0, 2)
    log.info("[%s] done in %.1f s", name, out[f"seconds_{name}"])
    return out


class Stopwatch:
    """Seconds per step of a stage, each logged as it ends: `seconds_<step>` in the summary and in MLflow."""

    def __init__(self, stage: str) -> None:
        self.stage, self.seconds, self._step, self._t0 = stage, {}, None, 0.0

    def start(self, step: str) -> None:
        """End the running step (if any) and start `step`."""
        now = time.perf_counter()
        if self._step:
            self.seconds[f"seconds_{self._step}"] = round(now - self._t0, 2)
            log.info("[%s] %s done in %.1f s", self.stage, self._step, now - self._t0)
        self._step, self._t0 = step, now

    def stop(self) -> dict[str, float]:
        self.start("")
        return self.seconds


def generate(spark: SparkSession, cfg: Config) -> Summary:
    g = cfg.generate
    log.info("[generate] about %d events for %d users, %d items -> %s", g.events, g.users, g.items, cfg.input_path)
    write_table(generate_events(spark, g), cfg.input_path, partition_by="event_date", whole_table=True)
    return {"generated_path": cfg.input_path}


def generate_if_missing(spark: SparkSession, cfg: Config) -> Summary:
    """Generate demo input when no input path is configured and none was generated yet."""
    if path_exists(spark, cfg.input_path):
        log.info("[generate] input exists at %s; not regenerating", cfg.input_path)
        return {}
    if cfg.input.path is not None:
        raise RecsysError(f"input path not found: {cfg.input.path} (fix input.path, or unset it to use generated data)")
    return generate(spark, cfg)


def ingest(spark: SparkSession, cfg: Config) -> Summary:
    """Raw input -> clean events + quarantine; fails (writing nothing) on too many bad rows."""
    raw = read_source(spark, cfg.input, cfg.input_path, cfg.ingest.date_from, cfg.ingest.date_to)
    check_source_columns(raw, cfg.input, cfg.input_path)
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    validated = validate_events(raw, cfg.input, cfg.ingest, cfg.events.weights, now).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        rows_read = raw.count()
        by_reason = {r[S.REASON]: r["count"] for r in validated.groupBy(S.REASON).count().collect()}
        clean = by_reason.pop(None, 0)
        bad = sum(by_reason.values())
        if clean + bad != rows_read:
            raise RecsysError(f"ingest lost rows: read {rows_read}, classified {clean + bad}")
        _check_bad_fraction(validated, rows_read, clean, by_reason, cfg.ingest.max_bad_fraction)
        for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            log.info("[ingest] quarantined %d rows: %s", n, reason)
        write_table(clean_events(validated), cfg.path("events"), "event_date", expected_rows=clean)
        write_table(quarantine_rows(validated, raw.columns), cfg.path("quarantine"), S.QUARANTINE_DATE, expected_rows=bad)
    finally:
        validated.unpersist()
    written = read_table(spark, cfg.path("events")).agg(F.min("event_date"), F.max("event_date")).first()
    tracking.log_tags({"dataset_path": cfg.input_path, "dataset_format": cfg.input.format,
                       **tracking.fingerprint(rows_read, written[0], written[1], list_names(spark, cfg.input_path))})
    reasons = pd.DataFrame(sorted(by_reason.items()), columns=["reason", "rows"])
    tracking.log_bytes(reasons.to_csv(index=False).encode(), "quarantine/summary.csv")
    return {
        "rows_read": rows_read,
        "rows_clean": clean,
        "rows_quarantined": bad,
        "quarantined_by_reason": dict(sorted(by_reason.items())),
        "paths": {"events": cfg.path("events"), "quarantine": cfg.path("quarantine")},
    }


def _check_bad_fraction(validated, rows_read: int, clean: int, by_reason: dict[str, int], limit: float) -> None:
    bad = rows_read - clean
    if rows_read == 0:
        raise RecsysError("ingest read 0 rows: the input is empty (check input.path and the --from/--to range)")
    if clean > 0 and bad / rows_read <= limit:
        return
    top = sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))
    example = validated.where(F.col(S.REASON) == top[0][0]).drop(*[c for c in validated.columns if c.startswith("__")]).first()
    head = "no row is valid" if clean == 0 else f"{bad / rows_read:.1%} of rows are bad, above ingest.max_bad_fraction={limit}"
    reasons = ", ".join(f"{r}={n}" for r, n in top[:3])
    raise RecsysError(
        f"ingest: {head} ({bad} of {rows_read}); top reasons: {reasons}; example row: {example.asDict()}. "
        "Fix the input or input.columns, or raise ingest.max_bad_fraction; nothing was written"
    )


def train(spark: SparkSession, cfg: Config) -> Summary:
    """Clean events -> interactions -> (tuned) ALS, evaluated against popularity; model saved."""
    events = read_table(spark, cfg.path("events")).select(*S.EVENT_COLUMNS)
    last = events.agg(F.max("event_ts")).first()[0]
    if last is None:
        raise RecsysError(f"no clean events in {cfg.path('events')}: run `recsys-spark ingest` first")
    _tag_events(spark, cfg, events)
    ic, k, implicit = cfg.interactions, cfg.train.k, cfg.interactions.mode == "implicit"
    weights = cfg.events.weights
    keep = StorageLevel.MEMORY_AND_DISK
    clock = Stopwatch("train")
    clock.start("prepare")
    all_pairs = build_interactions(events, ic, weights, last).persist(keep)
    users = build_id_map(all_pairs, "user_id", "user_idx").persist(keep)
    items = build_id_map(all_pairs, "item_id", "item_idx").persist(keep)
    indexed = index_interactions(all_pairs, users, items).persist(keep)
    n_users, n_items, n_pairs = users.count(), items.count(), indexed.count()
    log.info("[train] %d interactions, %d users, %d items (%s feedback)", n_pairs, n_users, n_items, ic.mode)
    unfiltered = dataclasses.replace(ic, min_user_items=1, min_item_users=1)

    def pairs(ev, as_of):
        return index_interactions(build_interactions(ev, unfiltered, weights, as_of), users, items)

    sp = cfg.split
    if sp.method == "temporal":
        cutoff = dt.datetime.combine(sp.cutoff, dt.time()) if sp.cutoff else default_cutoff(last, sp.test_days, sp.followup_days)
        train_ev, test_ev = temporal_split(events, cutoff, sp.test_days)
        train_i, test_i = pairs(train_ev, cutoff).persist(keep), pairs(test_ev, cutoff)
        vcut = cutoff - dt.timedelta(days=cfg.tune.validation_days)
        fit_ev, val_ev = temporal_split(train_ev, vcut, cfg.tune.validation_days)
        tune_train, tune_val = pairs(fit_ev, vcut), pairs(val_ev, cutoff)
        test_end = cutoff + dt.timedelta(days=sp.test_days)
        split_info = {"cutoff": cutoff.isoformat(), "test_end": test_end.isoformat(),
                      "followup_end": (test_end + dt.timedelta(days=sp.followup_days)).isoformat()}
    else:
        train_i, test_i = random_split(indexed, sp.test_fraction, sp.seed)
        train_i = train_i.persist(keep)
        tune_train, tune_val = random_split(train_i, sp.test_fraction, sp.seed + 1)
        split_info = {"test_fraction": sp.test_fraction}
    log.info("[train] %d training interactions", train_i.count())  # cached here, so the fit's seconds are the fit's
    params: dict[str, Any] = {}
    tuning: list[dict] = []
    if cfg.tune.enabled:
        clock.start("tune")
        if tune_train.persist(keep).isEmpty():
            raise RecsysError(
                f"tuning has no training data before the validation slice ({cfg.tune.validation_days} days before the cutoff): "
                "lower tune.validation_days or split.test_days, or set tune.enabled=false"
            )
        params, tuning = tune(tune_train, tune_val, cfg.als, cfg.tune, implicit, k)
        tracking.log_candidates(tuning, f"{cfg.tune.metric}_at_{k}")
        log.info("[train] best candidate: %s", params)
    clock.start("als_fit")
    model = fit_als(train_i, cfg.als, implicit, **params)
    clock.start("evaluate")
    result = evaluate(model, train_i, test_i, k)
    served, seen = model, train_i
    if cfg.train.refit_on_all:
        clock.start("refit")
        served, seen = fit_als(indexed, cfg.als, implicit, **params), indexed
    clock.start("save")
    chosen = {"rank": cfg.als.rank, "reg_param": cfg.als.reg_param, "alpha": cfg.als.alpha, **params}
    bundle = TrainedModel(served, users, items, seen.select("user_idx", "item_idx"), popularity(seen), {**cfg.to_dict(), "chosen": chosen})
    save_model(bundle, cfg.path("model"))
    tracking.log_dir(local_dir(spark, cfg.path("model")), "model")
    tracking.log_params({f"chosen.{k}": v for k, v in chosen.items()})
    follow = [F.lit(dt.datetime.fromisoformat(split_info[k]) if k in split_info else None).cast("timestamp").alias(a)
              for k, a in (("test_end", "followup_start"), ("followup_end", "followup_end"))]
    _write_eval_tables(spark, cfg, result.metrics, tuning, result.per_user.join(users, "user_idx").select("*", *follow))
    for cached in (result.per_user, train_i, tune_train, indexed, items, users, all_pairs):
        cached.unpersist()  # free executor memory for the stages that follow
    return {
        "interactions": n_pairs, "users": n_users, "items": n_items, "split": split_info, "chosen_params": chosen,
        "metrics": result.metrics, "tuning": tuning, **clock.stop(),
        "paths": {"model": cfg.path("model"), "eval": cfg.path("eval")},
    }


def _write_eval_tables(spark: SparkSession, cfg: Config, metrics: dict, tuning: list[dict], per_user) -> None:
    """Metrics side by side (ALS | baseline), tuning candidates, per-user ALS metrics (for cohorts)."""
    names = [m for m in metrics if not m.startswith("baseline_")]
    table = pd.DataFrame({"metric": names, "als": [metrics[m] for m in names], "baseline": [metrics[f"baseline_{m}"] for m in names]})
    write_table(spark.createDataFrame(table), cfg.path("eval/metrics"))
    write_text(spark, cfg.path("eval/metrics.csv"), table.to_csv(index=False))
    tracking.log_bytes(table.to_csv(index=False).encode(), "eval/metrics.csv")
    if tuning:
        write_table(spark.createDataFrame(pd.DataFrame(tuning)), cfg.path("eval/tuning"))
        write_text(spark, cfg.path("eval/tuning.csv"), pd.DataFrame(tuning).to_csv(index=False))
        tracking.log_bytes(pd.DataFrame(tuning).to_csv(index=False).encode(), "eval/tuning.csv")
    write_table(per_user, cfg.path("eval/per_user"))


def recommend(spark: SparkSession, cfg: Config, run_id: str | None = None) -> Summary:
    """Top-N per user from a saved model (seen excluded); unknown users get popular items."""
    n = cfg.recommend.n
    if n <= 0:
        raise RecsysError(f"recommend.n must be a positive integer, got {n}; try 10")
    path = cfg.recommend.model or cfg.path("model")
    if path.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        path = tracking.download_model(path)
    m = load_model(spark, path)
    with_factors = m.users.join(m.als.userFactors.select(F.col("id").alias("user_idx")), "user_idx")
    if cfg.recommend.users:
        wanted = spark.createDataFrame([(u,) for u in cfg.recommend.users], "user_id string").distinct()
        served = wanted.join(with_factors, "user_id")
        fallback = wanted.join(with_factors, "user_id", "left_anti")
    else:
        served, fallback = with_factors, spark.createDataFrame([], "user_id string")
    als = (
        als_top_n(m.als, served.select("user_idx"), m.seen, n)
        .join(m.users, "user_idx")
        .join(m.items, "item_idx")
        .select("user_id", "rank", "item_id", "score", F.lit("als").alias("source"))
    )
    best = m.popular.join(m.items, "item_idx").orderBy(F.desc("popularity"), "item_idx").limit(n).collect()  # n rows
    top = spark.createDataFrame(
        [(i, r["item_id"], float(r["popularity"])) for i, r in enumerate(best, 1)], "rank int, item_id string, score float"
    )
    popular = fallback.crossJoin(F.broadcast(top)).select("user_id", "rank", "item_id", "score", F.lit("popular").alias("source"))
    run_id = run_id or tracking.current_run_id() or uuid.uuid4().hex
    today = dt.datetime.now(dt.timezone.utc).date()
    out = als.unionByName(popular).withColumn("run_id", F.lit(run_id)).withColumn("run_date", F.lit(today))
    write_table(out, cfg.path("recommendations"), "run_date")
    written = read_table(spark, cfg.path("recommendations")).where(F.col("run_date") == F.lit(today))
    counts = {r["source"]: r["count"] for r in written.groupBy("source").count().collect()}
    return {"recommendations": counts, "run_id": run_id, "paths": {"recommendations": cfg.path("recommendations")}}


def retention(spark: SparkSession, cfg: Config) -> Summary:
    """Cohort retention (both kinds), stickiness, and, when an evaluation exists, quality by cohort."""
    rc = cfg.retention
    check_granularity(rc.granularity)
    unknown = sorted(set(rc.event_types or []) - set(cfg.events.weights))
    if unknown:
        raise RecsysError(f"retention.event_types has unknown event type(s) {unknown}; known: {sorted(cfg.events.weights)}")
    events = read_table(spark, cfg.path("events")).select(*S.EVENT_COLUMNS)
    if rc.event_types:
        events = events.where(F.col("event_type").isin(rc.event_types))
    data_end = events.agg(F.max("event_date")).first()[0]
    if data_end is None:
        raise RecsysError(f"no events for retention in {cfg.path('events')}" + (f" of types {rc.event_types}" if rc.event_types else "")
                          + ": run `recsys-spark ingest` first, or widen retention.event_types")
    keep = StorageLevel.MEMORY_AND_DISK
    activity = user_activity(events, rc.granularity).persist(keep)
    base = cfg.path("retention")
    write_table(cohort_retention(activity, F.lit(data_end), rc.granularity), f"{base}/cohorts")
    write_table(stickiness(events), f"{base}/stickiness")
    table = read_table(spark, f"{base}/cohorts").toPandas()  # cohorts x periods: small
    g = rc.granularity
    files = {"retention_heatmap.png": heatmap_png(table, g), "retention_curves.png": curves_png(table, g),
             "retention_matrix.csv": retention_matrix(table).to_csv().encode(), "retention_table.csv": table.to_csv(index=False).encode()}
    for name, data in files.items():
        write_bytes(spark, f"{base}/{name}", data)
        tracking.log_bytes(data, f"retention/{name}")
    _tag_events(spark, cfg, events)
    out: Summary = {"retention_headline": _headline(table), "retention_granularity": g, "paths": {"retention": base},
                    **_weighted(table)}
    stick = read_table(spark, f"{base}/stickiness")
    last30 = stick.where(F.col("date") > F.date_sub(F.lit(data_end), 30)).agg(F.avg("dau_mau")).first()[0]
    out["dau_mau_last_30_days"] = float(last30 or 0.0)
    if path_exists(spark, cfg.path("eval/per_user")):
        cohorts = activity.where(F.col("period") == 0).select("user_id", "cohort")
        quality = quality_by_cohort(read_table(spark, cfg.path("eval/per_user")), events, cohorts)
        write_table(quality, f"{base}/quality_by_cohort")
        out["quality_by_cohort"] = [r.asDict() for r in read_table(spark, f"{base}/quality_by_cohort").orderBy("cohort").collect()]
    activity.unpersist()
    return out


def _weighted(table: pd.DataFrame) -> dict[str, float | None]:
    """Cohort-size-weighted bounded retention in periods 1 and 4 (over cohorts that observe them)."""
    b = table[table["kind"] == "bounded"]
    out: dict[str, float | None] = {}
    for p in (1, 4):
        cells = b[b["period"] == p]
        out[f"retention_period{p}_weighted"] = float(cells["active_users"].sum() / cells["cohort_size"].sum()) if len(cells) else None
    return out


def _tag_events(spark: SparkSession, cfg: Config, events) -> None:
    """Tag the active run with the clean-events table it read: path, rows, dates, partitions."""
    row = events.agg(F.count("*"), F.min("event_date"), F.max("event_date")).first()
    tracking.log_tags({"dataset_path": cfg.path("events"),
                       **tracking.fingerprint(row[0], row[1], row[2], list_names(spark, cfg.path("events")))})


def _headline(table: pd.DataFrame) -> list[dict[str, Any]]:
    """Period 1 and 4 bounded retention of the three largest cohorts (None where not observable)."""
    b = table[table["kind"] == "bounded"]
    largest = b[b["period"] == 0].nlargest(3, "cohort_size")
    rows = []
    for _, c in largest.iterrows():
        r = b[b["cohort"] == c["cohort"]].set_index("period")["retention"]
        rows.append({"cohort": str(c["cohort"]), "size": int(c["cohort_size"]),
                     "period_1": float(r[1]) if 1 in r else None, "period_4": float(r[4]) if 4 in r else None})
    return rows


JOBS: dict[str, Callable[[SparkSession, Config], Summary]] = {
    "generate": generate, "ingest": ingest, "train": train, "recommend": recommend, "retention": retention,
}
PIPELINE: list[tuple[str, Callable[[SparkSession, Config], Summary]]] = [
    ("generate", generate_if_missing),
    ("ingest", ingest),
    ("train", train),
    ("recommend", recommend),
    ("retention", retention),
]


def summary_metrics(summary: Summary) -> dict[str, float]:
    """The numbers in a stage summary, under the stable metric names runs are compared by."""
    out: dict[str, float] = {}
    for key in ("rows_read", "rows_clean", "rows_quarantined", "interactions", "users", "items", "dau_mau_last_30_days",
                "retention_period1_weighted", "retention_period4_weighted"):
        if summary.get(key) is not None:
            out[key] = summary[key]
    out |= {f"quarantined_{r}": n for r, n in summary.get("quarantined_by_reason", {}).items()}
    out |= {k: v for k, v in summary.get("metrics", {}).items()}
    out |= {f"recommendations_{src}": n for src, n in summary.get("recommendations", {}).items()}
    out |= {k: v for k, v in summary.items() if k.startswith("seconds_")}
    return out


def run_job(name: str, spark: SparkSession, cfg: Config) -> Summary:
    """One job, timed, its metrics logged to the active MLflow run."""
    out = timed(name, JOBS[name], spark, cfg)
    tracking.log_metrics(summary_metrics(out))
    return out


def run_pipeline(spark: SparkSession, cfg: Config) -> Summary:
    """Every stage in order, each in a nested MLflow run; the parent gets all metrics too."""
    summary: Summary = {"paths": {}}
    for name, fn in PIPELINE:
        with tracking.tracked_run(cfg, name, nested=True):
            out = timed(name, fn, spark, cfg)
            tracking.log_metrics(summary_metrics(out))
        summary["paths"].update(out.pop("paths", {}))
        summary.update(out)
    tracking.log_metrics(summary_metrics(summary))
    tracking.log_params({f"chosen.{k}": v for k, v in summary.get("chosen_params", {}).items()})
    return summary
