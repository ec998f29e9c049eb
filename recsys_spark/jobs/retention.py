"""retention: cohort retention (both kinds), stickiness, and, when an evaluation exists, quality by cohort."""

from __future__ import annotations

import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.analytics.cohorts import cohort_retention, quality_by_cohort, stickiness, user_activity
from recsys_spark.analytics.plots import curves_png, heatmap_png, retention_matrix
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.infra.filesystem import path_exists, write_bytes
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.dataset import log_events_tags
from recsys_spark.mlops import tracking
from recsys_spark.results import CohortHeadline, RetentionResult


def retention(spark: SparkSession, cfg: Config) -> RetentionResult:
    rc = cfg.retention
    events = read_table(spark, cfg.path(names.EVENTS)).select(*S.EVENT_COLUMNS)
    if rc.event_types:
        events = events.where(F.col("event_type").isin(rc.event_types))
    data_end = events.agg(F.max("event_date")).first()[0]
    if data_end is None:
        raise RecsysError(
            f"no events for retention in {cfg.path('events')}"
            + (f" of types {rc.event_types}" if rc.event_types else "")
            + ": run `recsys-spark ingest` first, or widen retention.event_types"
        )
    activity = user_activity(events, rc.granularity).persist(StorageLevel.MEMORY_AND_DISK)
    base = cfg.path(names.RETENTION)
    write_table(cohort_retention(activity, F.lit(data_end), rc.granularity), f"{base}/cohorts")
    write_table(stickiness(events), f"{base}/stickiness")
    table = read_table(spark, f"{base}/cohorts").toPandas()  # cohorts x periods: small
    g = rc.granularity
    files = {
        "retention_heatmap.png": heatmap_png(table, g),
        "retention_curves.png": curves_png(table, g),
        "retention_matrix.csv": retention_matrix(table).to_csv().encode(),
        "retention_table.csv": table.to_csv(index=False).encode(),
    }
    for name, data in files.items():
        write_bytes(spark, f"{base}/{name}", data)
        tracking.log_bytes(data, f"retention/{name}")
    log_events_tags(spark, cfg, events)
    stick = read_table(spark, f"{base}/stickiness")
    last30 = stick.where(F.col("date") > F.date_sub(F.lit(data_end), 30)).agg(F.avg("dau_mau")).first()[0]
    tracking.log_bytes(
        stick.orderBy("date").toPandas().to_csv(index=False).encode(), "retention/stickiness.csv"
    )  # one row per day
    quality = []
    if path_exists(spark, cfg.path(names.PER_USER)):
        cohorts = activity.where(F.col("period") == 0).select("user_id", "cohort")
        write_table(
            quality_by_cohort(read_table(spark, cfg.path(names.PER_USER)), events, cohorts),
            f"{base}/quality_by_cohort",
        )
        quality = [
            r.asDict() for r in read_table(spark, f"{base}/quality_by_cohort").orderBy("cohort").collect()
        ]  # one row per cohort
        tracking.log_bytes(pd.DataFrame(quality).to_csv(index=False).encode(), "retention/quality_by_cohort.csv")
    activity.unpersist()
    return RetentionResult(
        granularity=g,
        headline=headline(table),
        dau_mau_last_30_days=float(last30 or 0.0),
        **weighted_retention(table),
        quality_by_cohort=quality,
        paths={"retention": base},
    )


def weighted_retention(table: pd.DataFrame) -> dict[str, float | None]:
    """Cohort-size-weighted bounded retention in periods 1 and 4 (over cohorts that observe them whole)."""
    b = table[(table["kind"] == "bounded") & table["complete"]]
    out: dict[str, float | None] = {}
    for p in (1, 4):
        cells = b[b["period"] == p]
        out[f"retention_period{p}_weighted"] = (
            float(cells["active_users"].sum() / cells["cohort_size"].sum()) if len(cells) else None
        )
    return out


def headline(table: pd.DataFrame) -> list[CohortHeadline]:
    """Period 1 and 4 bounded retention of the three largest cohorts (None where not observable,
    `partial_periods` naming those seen only in part)."""
    b = table[table["kind"] == "bounded"]
    largest = b[b["period"] == 0].nlargest(3, "cohort_size")
    rows = []
    for _, c in largest.iterrows():
        cells = b[b["cohort"] == c["cohort"]].set_index("period")
        r = cells["retention"]
        rows.append(
            CohortHeadline(
                str(c["cohort"]),
                int(c["cohort_size"]),
                float(r[1]) if 1 in r else None,
                float(r[4]) if 4 in r else None,
                [p for p in (1, 4) if p in r and not cells.loc[p, "complete"]],
            )
        )
    return rows
