"""stream: raw files as they land -> events and quarantine, exactly once, then fresh lists for the
users each micro-batch touched.

Structured Streaming reads new files of the raw input (`events/sources.stream_source`: ingest's
reader and options); every micro-batch goes through ingest's own classification (`classify`:
validation, pseudonyms, the erasure list) plus one check ingest makes within one read and a stream
must make across batches: a clean row that repeats one already in the events table is a duplicate.
Its clean rows are merged into their date partitions of `events` (a late event lands in its own
date) and its bad rows into `quarantine`, and the batch id (with the query's, from the checkpoint)
is appended to `stream/batches`, all in one table-layer transaction: Spark replays a batch whose
commit it did not record (a kill between the two), and a batch already in `stream/batches` is
skipped (its users' lists refreshed again), so every raw row lands once. A first batch reads every
file already in the input folder: point the stream at a folder only new files reach.
Then, when a model exists, recommend runs with fold-in for the users of the batch (their lists
replace theirs of the day). Each batch logs rows, quarantined, users refreshed and its latency
(from the oldest of its files landing to its lists written) to the stream's MLflow run, by step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.events import schema as S
from recsys_spark.events.privacy import ERASED
from recsys_spark.events.sources import LANDED, stream_source
from recsys_spark.events.validation import PARSED_EVENT_TS, PARSED_USER_ID, clean_events, quarantine_rows
from recsys_spark.infra.filesystem import SUCCESS, path_exists, read_text
from recsys_spark.infra.tables import read_table, transaction
from recsys_spark.jobs.ingest import class_counts, classify, merge_outside
from recsys_spark.jobs.recommend import recommend
from recsys_spark.mlops import tracking
from recsys_spark.results import StreamResult

log = logging.getLogger("recsys_spark")
BATCH_SCHEMA = (
    "query_id string, batch_id long, rows_read long, rows_clean long, rows_quarantined long, rows_erased long, "
    "committed_at timestamp"
)  # and max_event_ts: the batch's newest clean event (the next batches' watermark)


def stream(spark: SparkSession, cfg: Config) -> StreamResult:
    sc = cfg.stream
    raw = stream_source(spark, cfg.input, cfg.input_path, sc.max_files_per_batch)
    result = StreamResult(paths={n: cfg.path(n) for n in (names.EVENTS, names.QUARANTINE, names.STREAM_BATCHES)})
    run_id = tracking.current_run_id()  # foreachBatch runs on another thread: log to this run by id

    def each(batch: DataFrame, batch_id: int) -> None:
        ingest_batch(spark, cfg, batch, batch_id, result, run_id)

    writer = raw.writeStream.foreachBatch(each).option("checkpointLocation", cfg.path(names.STREAM_CHECKPOINT))
    if sc.once:
        writer = writer.trigger(availableNow=True)
    else:
        writer = writer.trigger(processingTime=f"{sc.interval_seconds} seconds")
    how = "what has landed, then stop" if sc.once else f"a micro-batch every {sc.interval_seconds} s until stopped"
    log.info("[stream] reading new files of %s: %s", cfg.input_path, how)
    query = writer.start()
    try:
        query.awaitTermination()
    finally:
        query.stop()
    return result


def ingest_batch(
    spark: SparkSession, cfg: Config, batch: DataFrame, batch_id: int, result: StreamResult, run_id: str | None
) -> None:
    """One micro-batch: classified, merged into events and quarantine with its id in one
    transaction (skipped when its id is already committed), then its users' lists refreshed."""
    started = time.time()
    batches_table = cfg.path(names.STREAM_BATCHES)
    query = query_id(spark, cfg)  # a reset checkpoint is a new query, numbering its batches from 0 again
    done = read_table(spark, batches_table) if path_exists(spark, batches_table) else None
    if done is not None and done.where((F.col("query_id") == query) & (F.col("batch_id") == batch_id)).count():
        log.info("[stream] batch %d was already committed: skipped (a replay); its users' lists refreshed", batch_id)
        result.replayed += 1
        earlier = done.where((F.col("query_id") != query) | (F.col("batch_id") < batch_id))  # its watermark then
        users = batch_users(
            classify(batch.drop(LANDED), cfg).transform(late, watermark(cfg, earlier)).where(~F.col(ERASED))
        )
        refresh(spark, cfg, users, run_id)  # a kill may have come between the commit and the refresh
        return
    batch = batch.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        first = batch.agg(F.count("*"), F.min(LANDED)).first()
        rows_read, landed = int(first[0]), first[1]
        if rows_read == 0:
            return
        raw = batch.drop(LANDED)
        events_table, quarantine_table = cfg.path(names.EVENTS), cfg.path(names.QUARANTINE)
        held = read_table(spark, events_table) if path_exists(spark, events_table) else None
        if held is not None and done is None:
            log.warning(
                "[stream] %s already holds events and this stream has committed no batch yet: the first batch "
                "reads every file under %s, so rows an ingest already wrote are quarantined again as duplicates "
                "(nothing is doubled in events); point input.path at a folder only new files reach",
                events_table,
                cfg.input_path,
            )
        flagged = classify(raw, cfg, held).transform(late, watermark(cfg, done)).persist(StorageLevel.MEMORY_AND_DISK)
        clean, by_reason, erased = class_counts(flagged, rows_read, cfg)
        validated = flagged.where(~F.col(ERASED)).drop(ERASED)
        nowhere = F.lit(False)  # every partition the batch touches is merged: old rows + the batch's
        events = merge_outside(
            clean_events(validated), events_table, names.EVENT_DATE, nowhere, lambda old, new: old.unionByName(new)
        )
        quarantine = merge_outside(
            quarantine_rows(validated, raw.columns),
            quarantine_table,
            names.QUARANTINE_DATE,
            nowhere,
            lambda old, new: old.unionByName(new, allowMissingColumns=True),
        )
        bad = sum(by_reason.values())
        if bad > cfg.ingest.max_bad_fraction * rows_read:  # ingest would refuse its input; a stream goes on
            log.warning(
                "[stream] batch %d: %d of %d rows quarantined, above ingest.max_bad_fraction %g: %s",
                batch_id,
                bad,
                rows_read,
                cfg.ingest.max_bad_fraction,
                dict(sorted(by_reason.items(), key=lambda kv: -kv[1])[:3]),
            )
        newest = validated.where(F.col(S.REASON).isNull()).agg(F.max(F.unix_micros(PARSED_EVENT_TS))).first()[0]
        row = [(query, batch_id, rows_read, clean, bad, erased, dt.datetime.now())]
        logged = spark.createDataFrame(row, BATCH_SCHEMA).withColumn(  # in micros: no Python time zone on the way
            "max_event_ts", F.timestamp_micros(F.lit(newest).cast("long"))
        )
        with transaction(spark) as tx:  # the batch's rows and its id switch in together
            tx.write_table(events, events_table, names.EVENT_DATE)
            tx.write_table(quarantine, quarantine_table, names.QUARANTINE_DATE)
            tx.write_table(
                logged if done is None else done.unionByName(logged, allowMissingColumns=True), batches_table
            )
        refreshed = refresh(spark, cfg, batch_users(validated), run_id) if clean else 0
        flagged.unpersist()
    finally:
        batch.unpersist()
    latency = time.time() - (landed.timestamp() if landed else started)
    result.add(rows_read, clean, bad, erased, refreshed, latency)
    log.info(
        "[stream] batch %d: %d rows read, %d clean, %d quarantined, %d users refreshed; %.1f s after a file landed",
        batch_id,
        rows_read,
        clean,
        bad,
        refreshed,
        latency,
    )
    tracking.log_step_metrics(
        run_id,
        {
            "batch_rows_read": rows_read,
            "batch_rows_clean": clean,
            "batch_rows_quarantined": bad,
            "batch_users_refreshed": refreshed,
            "batch_latency_seconds": latency,
        },
        batch_id,
    )


def watermark(cfg: Config, done: DataFrame | None) -> int | None:
    """The oldest event time (UTC micros) a clean row of the next batch may have: the newest clean
    event of the stream's committed batches less stream.watermark_hours (None: no bound, or
    nothing committed yet)."""
    hours = cfg.stream.watermark_hours
    if hours is None or done is None or "max_event_ts" not in done.columns:
        return None
    newest = done.agg(F.max(F.unix_micros("max_event_ts"))).first()[0]
    return int(newest - hours * 3_600_000_000) if newest is not None else None


def late(flagged: DataFrame, bound: int | None) -> DataFrame:
    """`classify`'s rows with clean rows older than `bound` (UTC micros) quarantined as `late`
    (nothing lost: the quarantine keeps them with their reason)."""
    if bound is None:
        return flagged
    old = F.col(S.REASON).isNull() & (F.unix_micros(PARSED_EVENT_TS) < F.lit(bound))
    return flagged.withColumn(S.REASON, F.when(old, F.lit(S.LATE)).otherwise(F.col(S.REASON)))


def batch_users(validated: DataFrame) -> DataFrame:
    """(user_id) of a batch's clean rows (classified, erased users left out)."""
    return validated.where(F.col(S.REASON).isNull()).select(F.col(PARSED_USER_ID).alias("user_id")).distinct()


def query_id(spark: SparkSession, cfg: Config) -> str:
    """The streaming query's id, kept in its checkpoint's `metadata` (new when the checkpoint is)."""
    return json.loads(read_text(spark, f"{cfg.path(names.STREAM_CHECKPOINT)}/metadata"))["id"]


def refresh(spark: SparkSession, cfg: Config, users: DataFrame, run_id: str | None) -> int:
    """Recommend with fold-in for `users` (user_id) when a model exists: their lists of the day
    are replaced, everyone else's kept. Returns the users served (both arms: a control user gets
    the popular list, as recommend gives it)."""
    logged = cfg.model_path.startswith(("runs:/", "models:/", "mlflow-artifacts:/"))
    if not cfg.stream.refresh or not (logged or path_exists(spark, f"{cfg.model_path.rstrip('/')}/{SUCCESS}")):
        return 0
    fold = dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, fold_in=True))
    out = recommend(spark, fold, run_id=run_id, touched=users)
    return sum(out.users_by_arm.values())
