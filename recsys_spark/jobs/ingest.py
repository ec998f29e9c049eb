"""ingest: raw input -> clean events + quarantine; fails (writing nothing) on too many bad rows.

A full run replaces both tables whole, so nothing of an earlier, different input survives. A
`--from/--to` run replaces the partitions of its dates; rows it read that are dated outside them
(a late event in raw partition D dated D+1, quarantined rows without a date) are merged into
their partitions instead of replacing them, so no other day's rows are lost.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.events.privacy import ERASED, erased_ids, flag_erased, pseudonym_key
from recsys_spark.events.sources import in_date_range, read_source
from recsys_spark.events.validation import (
    PARSED_EVENT_TYPE,
    PARSED_USER_ID,
    check_source_columns,
    clean_events,
    mark_repeats_of,
    pseudonymize_rows,
    quarantine_rows,
    validate_events,
)
from recsys_spark.infra.filesystem import list_names, path_exists
from recsys_spark.infra.tables import read_table, transaction
from recsys_spark.mlops import tracking
from recsys_spark.results import IngestResult

log = logging.getLogger("recsys_spark")


def ingest(spark: SparkSession, cfg: Config) -> IngestResult:
    raw = read_source(spark, cfg.input, cfg.input_path, cfg.ingest.date_from, cfg.ingest.date_to)
    check_source_columns(raw, cfg.input, cfg.input_path)
    flagged = classify(raw, cfg).persist(StorageLevel.MEMORY_AND_DISK)
    validated = flagged.where(~F.col(ERASED)).drop(ERASED)
    try:
        rows_read = raw.count()
        clean, by_reason, rows_erased = class_counts(flagged, rows_read, cfg)
        bad = sum(by_reason.values())
        if rows_erased:
            log.info("[ingest] left out %d rows of users on the erasure list (%s)", rows_erased, cfg.erasure_list)
        check_bad_fraction(validated, rows_read - rows_erased, clean, by_reason, cfg)
        for reason, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
            log.info("[ingest] quarantined %d rows: %s", n, reason)
        events, quarantine = clean_events(validated), quarantine_rows(validated, raw.columns)
        partial = bool(cfg.ingest.date_from or cfg.ingest.date_to)
        if partial:

            def inside(day):
                return in_date_range(day, cfg.ingest.date_from, cfg.ingest.date_to)

            # Events: clean events hold no exact repeats (ingest quarantines them), so a repeat is this run's copy;
            # in the run's own dates, the events that arrived in other raw partitions stay.
            table, day = cfg.path(names.EVENTS), F.col(names.EVENT_DATE)
            events = merge_outside(
                events,
                table,
                names.EVENT_DATE,
                inside(day),
                lambda old, extra: old.unionByName(extra, allowMissingColumns=True).dropDuplicates(),
            )
            events = keep_in_range(
                events, table, names.EVENT_DATE, inside(day), lambda old: from_other_raw_partitions(old, inside, table)
            )
            # Quarantine: the rows these files gave last time are superseded by this run's, in its dates or not.
            sources = raw.select(S.SOURCE).distinct()

            def of_other_files(old: DataFrame) -> DataFrame:
                return old.join(sources, S.SOURCE, "left_anti")

            table, day = cfg.path(names.QUARANTINE), F.col(names.QUARANTINE_DATE).try_cast("date")
            quarantine = merge_outside(
                quarantine,
                table,
                names.QUARANTINE_DATE,
                inside(day),
                lambda old, extra: of_other_files(old).unionByName(extra, allowMissingColumns=True),
            )
            quarantine = keep_in_range(quarantine, table, names.QUARANTINE_DATE, inside(day), of_other_files)
        with transaction(spark) as tx:  # events and quarantine change together
            tx.write_table(
                events,
                cfg.path(names.EVENTS),
                "event_date",
                expected_rows=events.count() if partial else clean,
                whole_table=not partial,
            )
            tx.write_table(
                quarantine,
                cfg.path(names.QUARANTINE),
                names.QUARANTINE_DATE,
                expected_rows=quarantine.count() if partial else bad,
                whole_table=not partial,
            )
    finally:
        flagged.unpersist()
    written = read_table(spark, cfg.path(names.EVENTS)).agg(F.min("event_date"), F.max("event_date")).first()
    tracking.log_tags(
        {
            "dataset_path": cfg.input_path,
            "dataset_format": cfg.input.format,
            **tracking.fingerprint(rows_read, written[0], written[1], list_names(spark, cfg.input_path)),
        }
    )
    reasons = pd.DataFrame(sorted(by_reason.items()), columns=["reason", "rows"])
    tracking.log_bytes(reasons.to_csv(index=False).encode(), "quarantine/summary.csv")
    return IngestResult(
        rows_read=rows_read,
        rows_clean=clean,
        rows_quarantined=bad,
        quarantined_by_reason=dict(sorted(by_reason.items())),
        rows_erased=rows_erased,
        paths={"events": cfg.path(names.EVENTS), "quarantine": cfg.path(names.QUARANTINE)},
    )


def classify(raw: DataFrame, cfg: Config, held: DataFrame | None = None) -> DataFrame:
    """Raw rows -> validated rows (`_reason`, null when clean), pseudonymized when a key is set,
    with ERASED flagging users on the erasure list; with `held` (the clean events already written:
    the stream) a clean row that repeats one of them is a duplicate too."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    key = pseudonym_key(cfg.privacy)
    every = validate_events(raw, cfg.input, cfg.ingest, cfg.events.weights, now)
    if key:
        every = every.transform(pseudonymize_rows, cfg.input, key)
    return every.transform(mark_repeats_of, held).transform(
        flag_erased, PARSED_USER_ID, erased_ids(raw.sparkSession, cfg)
    )


def class_counts(flagged: DataFrame, rows_read: int, cfg: Config) -> tuple[int, dict[str, int], int]:
    """(clean rows, quarantined rows by reason, rows of erased users) of `classify`'s rows, checked
    to account for every row read."""
    counted = {(r[S.REASON], r[ERASED]): r["count"] for r in flagged.groupBy(S.REASON, ERASED).count().collect()}
    rows_erased = sum(n for (_, gone), n in counted.items() if gone)
    counts = {reason: n for (reason, gone), n in counted.items() if not gone}
    clean = counts.pop(None, 0)
    by_reason = {rule.reason: 0 for rule in cfg.ingest.rules} | counts  # a rule that matched nothing shows as 0
    if clean + sum(by_reason.values()) + rows_erased != rows_read:
        raise RecsysError(
            f"ingest lost rows: read {rows_read}, classified {clean + sum(by_reason.values())}, erased {rows_erased}"
        )
    return clean, by_reason, rows_erased


def merge_outside(
    new: DataFrame, table: str, part: str, inside: Column, merge: Callable[[DataFrame, DataFrame], DataFrame]
) -> DataFrame:
    """`new`, where each partition it touches outside this run's range holds `merge(rows already
    there, new rows there)`: such a partition is rewritten whole, with nothing of it lost."""
    outside = [r[0] for r in new.where(~inside).select(F.col(part).cast("string")).distinct().collect()]  # dates: few
    old = existing_rows(new, table, part, F.col(part).cast("string").isin(outside)) if outside else None
    if old is None:
        return new
    return new.where(inside).unionByName(merge(old, new.where(~inside)).select(*new.columns))


def existing_rows(new: DataFrame, table: str, part: str, where: Column) -> DataFrame | None:
    """The rows of `table` where `where` holds, their partition column typed as in `new`; None
    when the table does not exist yet."""
    if not path_exists(new.sparkSession, table):
        return None
    old = read_table(new.sparkSession, table, empty=new.schema).where(where)  # a clean input's quarantine has no rows
    return old.withColumn(part, F.col(part).cast(new.schema[part].dataType))  # Spark infers partition types on read


def keep_in_range(
    new: DataFrame, table: str, part: str, inside: Column, keep: Callable[[DataFrame], DataFrame]
) -> DataFrame:
    """`new` plus the rows already in this run's own partitions of `table` that `keep` picks: those
    its raw partitions cannot give again (a late event in raw D+1 dated D; a bad row of another
    file), which a partial run that rebuilds its dates from its raw partitions must not drop."""
    old = existing_rows(new, table, part, inside)
    return new if old is None else new.unionByName(keep(old), allowMissingColumns=True).select(*new.columns)


def from_other_raw_partitions(old: DataFrame, inside: Callable[[Column], Column], table: str) -> DataFrame:
    """The events read from a raw partition outside this run's range, by `raw_date`; none for a
    table written before `raw_date` existed (nothing tells such rows apart: one full ingest records it)."""
    if names.RAW_DATE in old.columns:
        return old.where(F.col(names.RAW_DATE).isNotNull() & ~inside(F.col(names.RAW_DATE)))
    log.warning(
        "[ingest] %s has no %s column (written by an older version): rows of these dates that arrived in other "
        "raw partitions are not kept; run a full ingest once to record it",
        table,
        names.RAW_DATE,
    )
    return old.limit(0)


def check_bad_fraction(
    validated: DataFrame, rows_read: int, clean: int, by_reason: dict[str, int], cfg: Config
) -> None:
    """Refuse the input when nothing is valid or too much is bad, with the top reasons and one example row."""
    bad, limit = rows_read - clean, cfg.ingest.max_bad_fraction
    if rows_read == 0:
        raise RecsysError("ingest read 0 rows: the input is empty (check input.path and the --from/--to range)")
    if clean > 0 and bad / rows_read <= limit:
        return
    top = sorted(((r, n) for r, n in by_reason.items() if n), key=lambda kv: (-kv[1], kv[0]))
    first = validated.where(F.col(S.REASON) == top[0][0]).first().asDict()
    example = {c: v for c, v in first.items() if not c.startswith("__")}  # the input's own columns
    head = (
        "no row is valid"
        if clean == 0
        else f"{bad / rows_read:.1%} of rows are bad, above ingest.max_bad_fraction={limit}"
    )
    reasons = ", ".join(f"{r}={n}" for r, n in top[:3])
    hint = ""
    if top[0][0] == S.BAD_TIMESTAMP:
        col, fmt = cfg.input.columns["event_ts"], cfg.input.timestamp_format
        hint = (
            f" {col}={example[col]!r} does not parse "
            + (f"with input.timestamp_format={fmt!r}" if fmt else "as a timestamp (input.timestamp_format is not set)")
            + ": set input.timestamp_format to this value's Spark datetime pattern, or add it to the list of patterns "
            "(e.g. 'yyyy-MM-dd HH:mm:ss' or 'M/d/yyyy H:mm'), "
            "or to unix_seconds / unix_millis."
        )
    elif top[0][0] == S.UNKNOWN_EVENT_TYPE:
        value = first[PARSED_EVENT_TYPE]
        source = (
            f"{cfg.input.columns['event_type']}={example[cfg.input.columns['event_type']]!r}"
            if "event_type" in cfg.input.columns
            else f"input.event_type={cfg.input.event_type!r}"
        )
        mapped = sorted(k for k, v in cfg.input.event_type_map.items() if v == value)
        fix = (
            f"input.event_type_map maps {mapped} to it: map to one of those instead"
            if mapped
            else f"map it to one with input.event_type_map (e.g. {{{value}: view}})"
        )
        hint = (
            f" {source} gives event type {value!r}, which is not in events.weights {sorted(cfg.events.weights)}: "
            f"{fix}, or give it a weight in events.weights."
        )
    raise RecsysError(
        f"ingest: {head} ({bad} of {rows_read}); top reasons: {reasons}; example row: {example}.{hint} "
        "Fix the input, input.columns or input.timestamp_format, or raise ingest.max_bad_fraction; nothing was written"
    )
