"""The jobs' bodies: read inputs, call the library, write outputs, return a summary dict.

This is the I/O edge shared by the CLI and the spark-submit entry points in `jobs/`.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from . import schema as S
from .config import Config
from .errors import RecsysError
from .generate import generate_events
from .ingest import check_source_columns, clean_events, quarantine_rows, validate_events
from .sources import read_source
from .tables import path_exists, write_table

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
    check_source_columns(raw, cfg.input)
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


JOBS: dict[str, Callable[[SparkSession, Config], Summary]] = {"generate": generate, "ingest": ingest}
PIPELINE: list[tuple[str, Callable[[SparkSession, Config], Summary]]] = [
    ("generate", generate_if_missing),
    ("ingest", ingest),
]


def run_pipeline(spark: SparkSession, cfg: Config) -> Summary:
    summary: Summary = {}
    for name, fn in PIPELINE:
        summary.update(timed(name, fn, spark, cfg))
    return summary
