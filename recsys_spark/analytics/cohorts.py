"""Cohort retention, stickiness (DAU/WAU/MAU) and recommendation quality by cohort.

A user's cohort is the period (day, week starting Monday, or month; UTC) of their first activity;
period N is N whole periods after the cohort's start. `bounded` retention counts users active in
period N; `unbounded` counts users active in period N or later. Every (cohort, period) whose
period has started by the data's last day has a row (0 when nobody came back); later periods
have none, because unknown is not zero. The period holding the data's last day is observed only
in part unless that day ends it: its rows have `complete` false, so nobody reads a false dip.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.errors import RecsysError

GRANULARITIES = ("day", "week", "month")
RETENTION_COLUMNS = ["granularity", "cohort", "cohort_size", "period", "active_users", "retention", "kind", "complete"]


def check_granularity(granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise RecsysError(f"retention.granularity must be one of {list(GRANULARITIES)}, got {granularity!r}")


def period_start(ts: Column, granularity: str) -> Column:
    """The date the period containing `ts` starts (weeks start on Monday).

    >>> d = spark.createDataFrame([("2026-01-08 13:00:00",)], "ts string").select(F.to_timestamp("ts").alias("ts"))
    >>> d.select(period_start(F.col("ts"), "week").alias("w"), period_start(F.col("ts"), "month").alias("m")).first()
    Row(w=datetime.date(2026, 1, 5), m=datetime.date(2026, 1, 1))
    """
    return F.date_trunc(granularity, ts).cast("date")


def periods_between(start: Column, later: Column, granularity: str) -> Column:
    """Whole periods from period start `start` to period start `later`.

    >>> d = spark.createDataFrame([("2026-01-05", "2026-01-19", "2026-03-05")], "a string, b string, c string")
    >>> d.select(
    ...     periods_between(F.to_date("a"), F.to_date("b"), "week").alias("weeks"),
    ...     periods_between(F.to_date("a"), F.to_date("b"), "day").alias("days"),
    ...     periods_between(F.to_date("a"), F.to_date("c"), "month").alias("months"),
    ... ).first()
    Row(weeks=2, days=14, months=2)
    """
    if granularity == "month":
        return F.months_between(later, start).cast("int")
    days = F.datediff(later, start)
    return (days / 7).cast("int") if granularity == "week" else days


def user_activity(events: DataFrame, granularity: str, event_types: list[str] | None = None) -> DataFrame:
    """(user_id, cohort, period): one row per user and period with activity."""
    check_granularity(granularity)
    if event_types:
        events = events.where(F.col("event_type").isin(event_types))
    active = events.select("user_id", period_start(F.col("event_ts"), granularity).alias("_start")).distinct()
    first = F.min("_start").over(Window.partitionBy("user_id"))
    return active.withColumn("cohort", first).select(
        "user_id", "cohort", periods_between(F.col("cohort"), F.col("_start"), granularity).alias("period")
    )


def cohort_retention(activity: DataFrame, data_end: Column, granularity: str) -> DataFrame:
    """The retention contract table, both kinds, from `user_activity` output.

    `data_end` is a date column expression for the last observed day (e.g. a literal).
    """
    sizes = activity.where(F.col("period") == 0).groupBy("cohort").agg(F.count("*").alias("cohort_size"))
    last = periods_between(F.col("cohort"), period_start(data_end, granularity), granularity)
    # The last period is complete only when the day after the data's end starts a new period.
    ends_period = period_start(F.date_add(data_end, 1), granularity) > period_start(data_end, granularity)
    grid = sizes.withColumn("period", F.explode(F.sequence(F.lit(0), last))).withColumn(
        "complete", (F.col("period") < last) | ends_period
    )
    bounded = activity.groupBy("cohort", "period").agg(F.count("*").alias("_n"))
    last_seen = activity.groupBy("user_id", "cohort").agg(F.max("period").alias("period"))
    leaving = last_seen.groupBy("cohort", "period").agg(F.count("*").alias("_last"))
    later = (
        Window.partitionBy("cohort").orderBy(F.desc("period")).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    unbounded = grid.join(leaving, ["cohort", "period"], "left").select(
        "cohort", "period", F.sum(F.coalesce("_last", F.lit(0))).over(later).alias("_n")
    )

    def table(counts: DataFrame, kind: str) -> DataFrame:
        active = F.coalesce(F.col("_n"), F.lit(0)).cast("long")
        return grid.join(counts, ["cohort", "period"], "left").select(
            F.lit(granularity).alias("granularity"),
            "cohort",
            F.col("cohort_size").cast("long"),
            F.col("period").cast("int"),
            active.alias("active_users"),
            (active / F.col("cohort_size")).alias("retention"),
            F.lit(kind).alias("kind"),
            "complete",
        )

    return table(bounded, "bounded").unionByName(table(unbounded, "unbounded"))


def stickiness(events: DataFrame) -> DataFrame:
    """(date, dau, wau, mau, dau_mau) for every calendar day of the data; trailing 1/7/30 days
    (dau_mau is null where mau is 0: after 30 days with no activity).

    A user counts in the W-day active users of day d when active in [d - W + 1, d]. Each active
    day a covers [a, min(next active day - 1, a + W - 1)]: disjoint intervals per user, summed
    by a +1/-1 difference per day. Only per-day rows are aggregated, never users.
    """
    days = events.select("user_id", F.to_date("event_ts").alias("day")).distinct()
    nxt = F.lead("day").over(Window.partitionBy("user_id").orderBy("day"))
    spans = days.withColumn("_next", nxt)
    calendar = days.agg(F.min("day").alias("lo"), F.max("day").alias("hi")).select(
        F.explode(F.sequence("lo", "hi")).alias("date")
    )
    out = calendar
    for name, width in (("dau", 1), ("wau", 7), ("mau", 30)):
        end = F.date_add("day", width - 1)
        end = F.when(F.col("_next").isNull(), end).otherwise(F.least(end, F.date_sub("_next", 1)))
        deltas = (
            spans.select(F.col("day").alias("d"), F.lit(1).alias("delta"))
            .unionByName(spans.select(F.date_add(end, 1).alias("d"), F.lit(-1).alias("delta")))
            .groupBy("d")
            .agg(F.sum("delta").alias("delta"))
        )
        # calendar x per-day deltas: both have one row per day, so this join is days x days at most.
        running = calendar.join(deltas, F.col("d") <= F.col("date")).groupBy("date").agg(F.sum("delta").alias(name))
        out = out.join(running, "date", "left")
    return out.select(
        "date", *[F.coalesce(c, F.lit(0)).cast("long").alias(c) for c in ("dau", "wau", "mau")]
    ).withColumn("dau_mau", F.try_divide("dau", "mau"))  # null on a day nobody was active in the last 30 days


def quality_by_cohort(per_user: DataFrame, activity_events: DataFrame, cohorts: DataFrame) -> DataFrame:
    """Per cohort: users evaluated, mean NDCG@k, hit rate, and follow-up retention with vs without a
    hit, and with vs without a new item (one few users had used) in the list.

    `per_user` is the train job's per-user table (user_id, ndcg, hit_rate, new_in_list,
    followup_start, followup_end); a user is retained when active in [followup_start,
    followup_end). An association, not a causal effect: users who get hits (or new items) may
    differ in other ways. A per-user table from before `new_in_list` gives nulls for it.
    """
    returned = (
        per_user.select("user_id", "followup_start", "followup_end")
        .join(activity_events.select("user_id", "event_ts"), "user_id")
        .where((F.col("event_ts") >= F.col("followup_start")) & (F.col("event_ts") < F.col("followup_end")))
        .select("user_id")
        .distinct()
        .withColumn("_back", F.lit(1.0))
    )
    joined = (
        per_user.join(cohorts, "user_id")
        .join(returned, "user_id", "left")
        .withColumn("_back", F.when(F.col("followup_end").isNull(), None).otherwise(F.coalesce("_back", F.lit(0.0))))
    )
    hit = F.col("hit_rate") > 0
    new = (
        F.coalesce(F.col("new_in_list"), F.lit(False))
        if "new_in_list" in per_user.columns
        else F.lit(None).cast("boolean")
    )
    return joined.groupBy("cohort").agg(
        F.count("*").alias("users_evaluated"),
        F.avg("ndcg").alias("mean_ndcg"),
        F.avg("hit_rate").alias("hit_rate"),
        F.sum(hit.cast("int")).alias("users_with_hit"),
        F.avg(F.when(hit, F.col("_back"))).alias("retained_with_hit"),
        F.avg(F.when(~hit, F.col("_back"))).alias("retained_without_hit"),
        F.sum(new.cast("int")).alias("users_with_new_item"),
        F.avg(F.when(new, F.col("_back"))).alias("retained_with_new_item"),
        F.avg(F.when(~new, F.col("_back"))).alias("retained_without_new_item"),
    )
