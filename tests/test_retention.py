import datetime as dt

import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.analytics.cohorts import (
    RETENTION_COLUMNS,
    cohort_retention,
    quality_by_cohort,
    stickiness,
    user_activity,
)
from recsys_spark.errors import RecsysError
from recsys_spark.events.synthetic import generate_events

D = dt.datetime
SCHEMA = (
    "granularity string, cohort date, cohort_size long, period int, active_users long, retention double, "
    "kind string, complete boolean"
)
# Weeks start Monday: w0 = Jan 5-11, w1 = Jan 12-18, w2 = Jan 19-25, w3 = Jan 26 - Feb 1 (2026).
TOY = [
    ("A", D(2026, 1, 5, 10), "view"),  # week 0 only
    ("B", D(2026, 1, 6), "view"),
    ("B", D(2026, 1, 13), "purchase"),
    ("B", D(2026, 1, 20), "view"),
    ("B", D(2026, 1, 27), "view"),
    ("C", D(2026, 1, 7), "purchase"),
    ("C", D(2026, 1, 21), "view"),  # skips week 1, returns in week 2
    ("D", D(2026, 1, 11, 23, 59, 59), "view"),
    ("D", D(2026, 1, 12, 0, 0, 0), "view"),  # Sunday 23:59 vs Monday 00:00
    ("E", D(2026, 1, 12, 0, 0, 0), "view"),
    ("E", D(2026, 1, 28), "purchase"),  # cohort w1
    ("F", D(2026, 1, 14), "view"),
    ("H", D(2026, 1, 22), "view"),
    ("H", D(2026, 1, 30), "view"),  # cohort w2; data ends Fri Jan 30
    ("G", D(2026, 1, 26), "view"),  # cohort w3: later periods not observable yet
]


def toy_events(spark, rows=TOY):
    return spark.createDataFrame(rows, "user_id string, event_ts timestamp, event_type string")


def table(spark, granularity, rows, partial=None):
    """Expected rows; the cells of period start `partial` (the data ends inside it) are incomplete."""

    def start(cohort, p):
        d = dt.date.fromisoformat(cohort)
        if granularity == "month":
            return dt.date(d.year + (d.month - 1 + p) // 12, (d.month - 1 + p) % 12 + 1, 1)
        return d + dt.timedelta(days=p * (7 if granularity == "week" else 1))

    return spark.createDataFrame(
        [
            (granularity, dt.date.fromisoformat(c), s, p, a, a / s, k, str(start(c, p)) != partial)
            for c, s, p, a, k in rows
        ],
        SCHEMA,
    )


def run(spark, events, granularity, end, types=None):
    return cohort_retention(user_activity(events, granularity, types), F.lit(end), granularity)


def test_weekly_bounded_and_unbounded_by_hand(spark):
    got = run(spark, toy_events(spark), "week", dt.date(2026, 1, 30))
    expected = table(
        spark,
        "week",
        [
            ("2026-01-05", 4, 0, 4, "bounded"),
            ("2026-01-05", 4, 1, 2, "bounded"),
            ("2026-01-05", 4, 2, 2, "bounded"),
            ("2026-01-05", 4, 3, 1, "bounded"),
            ("2026-01-12", 2, 0, 2, "bounded"),
            ("2026-01-12", 2, 1, 0, "bounded"),
            ("2026-01-12", 2, 2, 1, "bounded"),
            ("2026-01-19", 1, 0, 1, "bounded"),
            ("2026-01-19", 1, 1, 1, "bounded"),
            ("2026-01-26", 1, 0, 1, "bounded"),
            ("2026-01-05", 4, 0, 4, "unbounded"),
            ("2026-01-05", 4, 1, 3, "unbounded"),
            ("2026-01-05", 4, 2, 2, "unbounded"),
            ("2026-01-05", 4, 3, 1, "unbounded"),
            ("2026-01-12", 2, 0, 2, "unbounded"),
            ("2026-01-12", 2, 1, 1, "unbounded"),
            ("2026-01-12", 2, 2, 1, "unbounded"),
            ("2026-01-19", 1, 0, 1, "unbounded"),
            ("2026-01-19", 1, 1, 1, "unbounded"),
            ("2026-01-26", 1, 0, 1, "unbounded"),
        ],
        partial="2026-01-26",
    )  # data ends Friday Jan 30: the week of Jan 26 is seen in part
    assert got.columns == RETENTION_COLUMNS
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_activity_restricted_to_purchases(spark):
    got = run(spark, toy_events(spark), "week", dt.date(2026, 1, 30), ["purchase"]).where(F.col("kind") == "bounded")
    # Purchasers: C (w0), B (w1), E (w3). Cohorts from first purchase.
    expected = table(
        spark,
        "week",
        [
            ("2026-01-05", 1, 0, 1, "bounded"),
            ("2026-01-05", 1, 1, 0, "bounded"),
            ("2026-01-05", 1, 2, 0, "bounded"),
            ("2026-01-05", 1, 3, 0, "bounded"),
            ("2026-01-12", 1, 0, 1, "bounded"),
            ("2026-01-12", 1, 1, 0, "bounded"),
            ("2026-01-12", 1, 2, 0, "bounded"),
            ("2026-01-26", 1, 0, 1, "bounded"),
        ],
        partial="2026-01-26",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_daily(spark):
    ev = toy_events(
        spark,
        [
            ("X", D(2026, 1, 1), "view"),
            ("X", D(2026, 1, 3), "view"),
            ("Y", D(2026, 1, 2, 23, 59), "view"),
            ("Y", D(2026, 1, 3), "view"),
        ],
    )
    got = run(spark, ev, "day", dt.date(2026, 1, 3)).where(F.col("kind") == "bounded")
    expected = table(
        spark,
        "day",
        [
            ("2026-01-01", 1, 0, 1, "bounded"),
            ("2026-01-01", 1, 1, 0, "bounded"),
            ("2026-01-01", 1, 2, 1, "bounded"),
            ("2026-01-02", 1, 0, 1, "bounded"),
            ("2026-01-02", 1, 1, 1, "bounded"),
        ],
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_monthly(spark):
    ev = toy_events(
        spark,
        [
            ("M1", D(2026, 1, 31, 23), "view"),
            ("M1", D(2026, 3, 1), "view"),
            ("M2", D(2026, 2, 15), "view"),
            ("M3", D(2026, 1, 10), "view"),
            ("M3", D(2026, 2, 1), "view"),
        ],
    )
    got = run(spark, ev, "month", dt.date(2026, 3, 1)).where(F.col("kind") == "bounded")
    expected = table(
        spark,
        "month",
        [
            ("2026-01-01", 2, 0, 2, "bounded"),
            ("2026-01-01", 2, 1, 1, "bounded"),
            ("2026-01-01", 2, 2, 1, "bounded"),
            ("2026-02-01", 1, 0, 1, "bounded"),
            ("2026-02-01", 1, 1, 0, "bounded"),
        ],
        partial="2026-03-01",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_unknown_granularity_is_a_clear_error(spark):
    with pytest.raises(
        RecsysError, match=r"retention.granularity must be one of \['day', 'week', 'month'\], got 'fortnight'"
    ):
        user_activity(toy_events(spark), "fortnight")


def _pandas_retention(ev: pd.DataFrame, end: dt.date) -> pd.DataFrame:
    """Independent weekly retention: plain pandas, explicit loops over cohorts and periods."""

    def monday(ts):
        return (ts - pd.to_timedelta(ts.dt.weekday, unit="D")).dt.normalize()

    ev = ev.assign(week=monday(ev.event_ts))
    first = ev.groupby("user_id").week.min().rename("cohort")
    act = ev[["user_id", "week"]].drop_duplicates().join(first, on="user_id")
    act["period"] = (act.week - act.cohort).dt.days // 7
    end_week = pd.Timestamp(end) - pd.Timedelta(days=pd.Timestamp(end).weekday())
    sunday = pd.Timestamp(end).weekday() == 6
    rows = []
    for cohort, users in act[act.period == 0].groupby("cohort").user_id:
        size, sub = len(users), act[act.cohort == cohort]
        last = sub.groupby("user_id").period.max()
        n = (end_week - cohort).days // 7 + 1
        for p in range(n):
            done = p < n - 1 or sunday
            rows.append(("week", cohort.date(), size, p, int((sub.period == p).sum()), "bounded", done))
            rows.append(("week", cohort.date(), size, p, int((last >= p).sum()), "unbounded", done))
    out = pd.DataFrame(
        rows, columns=["granularity", "cohort", "cohort_size", "period", "active_users", "kind", "complete"]
    )
    out["retention"] = out.active_users / out.cohort_size
    return out[RETENTION_COLUMNS]


def test_matches_an_independent_pandas_implementation_on_generated_data(spark, cfg):
    events = generate_events(spark, cfg.generate).where(
        F.col("user_id").isNotNull() & (F.col("event_ts") < D(2030, 1, 1))
    )
    end = events.agg(F.max("event_date")).first()[0]
    got = run(spark, events, "week", end)
    pdf = events.select("user_id", "event_ts").toPandas()  # test data only: a few thousand rows
    expected = spark.createDataFrame(_pandas_retention(pdf, end), SCHEMA)
    assert got.count() == 2 * 36  # 8 cohorts x their observable weeks (8 + 7 + ... + 1), two kinds
    assert_approx_df_equality(got, expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_stickiness_by_hand(spark):
    ev = toy_events(
        spark,
        [
            ("a", D(2026, 1, 1), "view"),
            ("a", D(2026, 1, 5), "view"),
            ("b", D(2026, 1, 3), "view"),
            ("c", D(2026, 1, 1, 8), "view"),
            ("c", D(2026, 1, 1, 9), "view"),
            ("c", D(2026, 1, 9), "view"),
        ],
    )
    dau = [2, 0, 1, 0, 1, 0, 0, 0, 1]
    wau = [2, 2, 3, 3, 3, 3, 3, 2, 3]
    mau = [2, 2, 3, 3, 3, 3, 3, 3, 3]
    expected = spark.createDataFrame(
        [(dt.date(2026, 1, 1 + i), dau[i], wau[i], mau[i], dau[i] / mau[i]) for i in range(9)],
        "date date, dau long, wau long, mau long, dau_mau double",
    )
    assert_approx_df_equality(stickiness(ev), expected, 1e-12, ignore_row_order=True, ignore_nullable=True)


def test_quality_by_cohort_by_hand(spark):
    fs, fe = D(2026, 1, 20), D(2026, 1, 27)
    per_user = spark.createDataFrame(
        [
            ("u1", 0.5, 1.0, True, fs, fe),
            ("u2", 0.0, 0.0, False, fs, fe),
            ("u3", 1.0, 1.0, True, fs, fe),
            ("u4", 0.2, 1.0, False, fs, fe),
        ],
        "user_id string, ndcg double, hit_rate double, new_in_list boolean, "
        "followup_start timestamp, followup_end timestamp",
    )
    cohorts = spark.createDataFrame(
        [
            ("u1", dt.date(2026, 1, 5)),
            ("u2", dt.date(2026, 1, 5)),
            ("u3", dt.date(2026, 1, 5)),
            ("u4", dt.date(2026, 1, 12)),
        ],
        "user_id string, cohort date",
    )
    ev = toy_events(
        spark,
        [
            ("u1", D(2026, 1, 21), "view"),
            ("u2", D(2026, 1, 27), "view"),
            ("u4", D(2026, 1, 20), "view"),
            ("u3", D(2026, 1, 19, 23), "view"),
        ],
    )
    expected = spark.createDataFrame(
        [
            (dt.date(2026, 1, 5), 3, 0.5, 2 / 3, 2, 0.5, 0.0, 2, 0.5, 0.0),
            (dt.date(2026, 1, 12), 1, 0.2, 1.0, 1, 1.0, None, 0, None, 1.0),
        ],
        "cohort date, users_evaluated long, mean_ndcg double, hit_rate double, users_with_hit long, "
        "retained_with_hit double, retained_without_hit double, users_with_new_item long, "
        "retained_with_new_item double, retained_without_new_item double",
    )
    assert_approx_df_equality(
        quality_by_cohort(per_user, ev, cohorts), expected, 1e-12, ignore_row_order=True, ignore_nullable=True
    )
    older = quality_by_cohort(per_user.drop("new_in_list"), ev, cohorts)  # a per-user table written before new_in_list
    assert {r.users_with_new_item for r in older.collect()} == {None}


def test_stickiness_over_a_30_day_gap_has_no_ratio_instead_of_failing(spark):
    ev = toy_events(spark, [("a", D(2026, 1, 1), "view"), ("a", D(2026, 2, 15), "view")])
    rows = {r.date: r for r in stickiness(ev).collect()}
    assert len(rows) == 46 and rows[dt.date(2026, 1, 30)].mau == 1 and rows[dt.date(2026, 1, 30)].dau_mau == 0.0
    gap = sorted(d for d, r in rows.items() if r.mau == 0)
    assert gap == [dt.date(2026, 1, 31) + dt.timedelta(days=i) for i in range(15)]  # Jan 31 .. Feb 14
    assert all(rows[d].dau_mau is None for d in gap) and rows[dt.date(2026, 2, 15)].dau_mau == 1.0
