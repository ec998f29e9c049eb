"""The control arm and the effect estimate (issue 29): arms from a keyed hash (deterministic,
balanced, the same in Spark and Python), the estimator and CUPED against numbers worked by hand
on seven users, Benjamini-Hochberg and the sample-ratio check, windows not yet observable, the
job's tables and errors, and control users served exactly the control policy's list."""

import base64
import dataclasses
import datetime as dt
import math
import re
import shutil

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.analytics.arms import CONTROL, TREATMENT, arm, arm_of
from recsys_spark.analytics.estimator import benjamini_hochberg, sample_ratio, user_outcomes
from recsys_spark.config import ConfigError, HoldoutConfig, load_config
from recsys_spark.errors import RecsysError
from recsys_spark.events.privacy import pseudonym
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.mlops import tracking
from recsys_spark.mlops.report import write_report
from recsys_spark.recs.topn import popular_lists
from recsys_spark.results import EffectResult

from support import TINY, cli, copied_root, mlflow_state, sets, small_config

H = HoldoutConfig(fraction=0.1, salt="test-salt")


def test_arms_are_deterministic_balanced_and_the_same_in_spark_and_python(spark):
    ids = [f"u{i:07d}" for i in range(20000)]
    pseudo = [pseudonym(b"k" * 16, u) for u in ids[:5000]]
    df = spark.createDataFrame([(u,) for u in ids + pseudo], "user_id string")
    got = {r.user_id: r.a for r in df.select("user_id", arm(H, F.col("user_id")).alias("a")).collect()}
    assert got == {u: arm_of(H, u) for u in ids + pseudo}  # Spark and the Spark-free twin agree
    for population in (ids, pseudo):
        control = sum(got[u] == CONTROL for u in population)
        _, p = sample_ratio(len(population) - control, control, H.fraction)
        assert p > 0.01, (control, len(population))  # balanced at the configured fraction
    again = {u: arm_of(H, u) for u in ids[:1000]}
    assert again == {u: got[u] for u in ids[:1000]}  # stable while the salt is
    other = HoldoutConfig(fraction=0.1, salt="another-salt")
    assert sum(arm_of(other, u) != got[u] for u in ids) > 1000  # a new salt draws a new split
    assert {arm_of(HoldoutConfig(fraction=0.0, salt="x"), u) for u in ids[:100]} == {TREATMENT}


@pytest.mark.parametrize(
    "override, message",
    [
        (
            ["recommend.holdout.fraction=0.6", "recommend.holdout.salt=s"],
            "recommend.holdout.fraction must be in [0, 0.5]",
        ),
        (
            ["recommend.holdout.fraction=-0.1", "recommend.holdout.salt=s"],
            "recommend.holdout.fraction must be in [0, 0.5]",
        ),
        (["recommend.holdout.fraction=0.1"], "recommend.holdout.fraction is 0.1 but recommend.holdout.salt is not set"),
    ],
)
def test_bad_holdout_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, override)


def test_benjamini_hochberg_and_the_sample_ratio_check_by_hand():
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.2])
    assert sample_ratio(900, 100, 0.1) == (0.0, 1.0)
    chi2, p = sample_ratio(850, 150, 0.1)
    assert chi2 == pytest.approx(50**2 / 900 + 50**2 / 100) and p == pytest.approx(math.erfc(math.sqrt(chi2 / 2)))
    assert p < 1e-6


D = dt.date(2026, 3, 11)  # the serving date


def day(offset: int) -> dt.date:
    return D + dt.timedelta(days=offset)


# Seven users: (arm, [(days after D, event type)]). Pre-period = D-27 .. D; follow-up 7d = D+1 .. D+7.
USERS = {
    "t1": (TREATMENT, [(-1, "view"), (-3, "view"), (2, "view"), (5, "purchase")]),
    "t2": (TREATMENT, [(-10, "view"), (1, "purchase"), (1, "view")]),
    "t3": (TREATMENT, [(-40, "view")]),
    "t4": (TREATMENT, []),
    "c1": (CONTROL, [(-2, "view"), (-1, "view"), (3, "view")]),
    "c2": (CONTROL, [(-5, "view")]),
    "c3": (CONTROL, [(8, "view")]),
}


@pytest.fixture
def served_root(spark, tmp_path):
    """An output root holding the seven users' assignments (served on D) and events to D+10."""
    cfg = small_config(str(tmp_path / "out"))
    cfg.recommend.holdout = dataclasses.replace(H, fraction=3 / 7)
    assignments = spark.createDataFrame(
        [(u, a, "run-1", D) for u, (a, _) in USERS.items()], "user_id string, arm string, run_id string, run_date date"
    )
    write_table(assignments, cfg.path("assignments"), "run_date")
    rows = [
        (u, "i1", t, dt.datetime.combine(day(o), dt.time(12)), None, day(o))
        for u, (_, ev) in USERS.items()
        for o, t in ev
    ]
    rows.append(("t3", "i2", "view", dt.datetime.combine(day(10), dt.time(9)), None, day(10)))  # the data ends D+10
    events = spark.createDataFrame(
        rows, "user_id string, item_id string, event_type string, event_ts timestamp, value double, event_date date"
    )
    write_table(events, cfg.path("events"), "event_date")
    return cfg


def test_the_serving_day_is_pre_period_and_the_windows_start_the_day_after(spark):
    """Pre-period D-27 .. D (D included), follow-up D+1 .. D+w: the days at each edge, by hand."""
    events = spark.createDataFrame(
        [("u", "i", "view", day(o)) for o in (-28, -27, 0, 0, 1, 7, 8)]
        + [("v", "i", "purchase", day(0)), ("v", "i", "purchase", day(8))],
        "user_id string, item_id string, event_type string, event_date date",
    )
    arms = spark.createDataFrame([("u", TREATMENT), ("v", CONTROL), ("w", CONTROL)], "user_id string, arm string")
    got = user_outcomes(arms, events, D, [7], 28, ["purchase"], "week").select(
        "user_id", "cohort", "pre_active_days", "return_7d", "active_days_7d", "purchases_7d"
    )
    expected = spark.createDataFrame(
        [
            # u: D-28 is outside the pre-period, D-27 and D (twice) are in it; D+1 and D+7 are in the window, D+8 not
            ("u", str(dt.date(2026, 2, 9)), 2.0, 1.0, 2.0, 0.0),
            ("v", str(dt.date(2026, 3, 9)), 1.0, 0.0, 0.0, 0.0),  # its purchases fall on D and D+8: outside
            ("w", "none", 0.0, 0.0, 0.0, 0.0),  # assigned, no events
        ],
        "user_id string, cohort string, pre_active_days double, return_7d double, active_days_7d double, "
        "purchases_7d double",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_the_estimator_and_cuped_match_the_numbers_worked_by_hand(spark, served_root):
    result = JOBS["effect"](spark, served_root)
    assert isinstance(result, EffectResult)
    assert result.served_date == D and result.arms == {TREATMENT: 4, CONTROL: 3}
    assert result.not_observable == [14, 28]  # the data ends D+10
    ret = next(e for e in result.overall() if e["outcome"] == "return" and e["window_days"] == 7)
    # Returned within 7 days: treatment 1 1 0 0 (mean 1/2, var 1/3), control 1 0 0 (c3 came back on
    # D+8: mean 1/3, var 1/3). Effect 1/6, Welch SE sqrt(1/3/4 + 1/3/3) = sqrt(7/36).
    assert (ret["mean_treatment"], ret["mean_control"]) == pytest.approx((1 / 2, 1 / 3))
    assert ret["effect"] == pytest.approx(1 / 6) and ret["se"] == pytest.approx(math.sqrt(7 / 36))
    assert ret["ci_low"] == pytest.approx(1 / 6 - 1.959963985 * math.sqrt(7 / 36))
    # CUPED, X = active days D-27..D: treatment 2 1 0 0, control 2 1 0; pooled theta = cov/var =
    # (17/42)/(34/42) = 1/2. Y' = Y - (X - 6/7)/2: treatment 3/7 13/14 3/7 3/7 (mean 31/56, var 1/16),
    # control 3/7 -1/14 3/7 (mean 11/42, var 1/12): effect 31/56 - 11/42 = 7/24, SE sqrt(1/64 + 1/36) = 5/24.
    assert ret["theta"] == pytest.approx(0.5)
    assert ret["effect_cuped"] == pytest.approx(7 / 24) and ret["se_cuped"] == pytest.approx(5 / 24)
    assert ret["variance_ratio"] == pytest.approx((25 / 576) / (7 / 36))
    assert ret["mde"] == pytest.approx((1.959963985 + 0.841621234) * math.sqrt(7 / 36))
    # Active days and purchases within 7 days: treatment 2 1 0 0 and 1 1 0 0; control 1 0 0 and 0 0 0.
    by = {e["outcome"]: e for e in result.overall() if e["window_days"] == 7}
    assert by["active_days"]["effect"] == pytest.approx(3 / 4 - 1 / 3)
    assert by["purchases"]["effect"] == pytest.approx(1 / 2) and by["purchases"]["mean_control"] == 0
    # The tables: one row per outcome and cohort for the 7-day window; the arms with the SRM check.
    est = read_table(spark, served_root.path("effect/estimates"))
    assert est.where(F.col("cohort") == "all").count() == 3
    assert {r.window_days for r in est.collect()} == {7}
    arms = read_table(spark, served_root.path("effect/arms")).select("arm", "users").orderBy("arm")
    assert_df_equality(
        arms,
        spark.createDataFrame([(CONTROL, 3), (TREATMENT, 4)], "arm string, users long"),
        ignore_nullable=True,
    )
    text = "\n".join(result.lines())
    assert "returned within 7d: +16.67 pp" in text and "within 14d: not yet observable (the data ends" in text
    assert result.metrics()["effect_return_7d"] == pytest.approx(1 / 6)
    assert result.metrics()["effect_return_7d_cuped_ci_high"] == pytest.approx(7 / 24 + 1.959963985 * 5 / 24)


def test_effect_refuses_a_run_without_control_users_or_follow_up(spark, served_root, tmp_path):
    cfg = served_root
    # No follow-up: the events end on the serving day.
    early = dataclasses.replace(cfg, effect=dataclasses.replace(cfg.effect, served_date=day(10)))
    write_table(
        read_table(spark, cfg.path("assignments")).withColumn("run_date", F.lit(day(10))),
        cfg.path("assignments"),
        "run_date",
    )
    with pytest.raises(
        RecsysError, match=r"no follow-up data: the events end 2026-03-21 and run run-1 served on 2026-03-21"
    ):
        JOBS["effect"](spark, early)
    treated = (
        read_table(spark, cfg.path("assignments")).where(F.col("run_date") == D).withColumn("arm", F.lit(TREATMENT))
    )
    write_table(treated.withColumn("run_date", F.lit(D)), cfg.path("assignments"), "run_date")
    with pytest.raises(RecsysError, match="has no control users: set recommend.holdout.fraction"):
        JOBS["effect"](spark, dataclasses.replace(cfg, effect=dataclasses.replace(cfg.effect, served_date=D)))


@pytest.fixture(scope="module")
def held_out(spark, trained, tmp_path_factory):
    """The shared trained root copied, then recommend with a third of the users held out."""
    cfg = copied_root(trained[0], tmp_path_factory.mktemp("holdout") / "out")
    cfg = dataclasses.replace(
        cfg,
        recommend=dataclasses.replace(cfg.recommend, holdout=HoldoutConfig(fraction=0.3, salt="s1")),
    )
    return cfg, JOBS["recommend"](spark, cfg)


def test_control_users_get_exactly_the_control_policys_list(spark, held_out):
    from recsys_spark.recs.model import load_model

    cfg, result = held_out
    arms = read_table(spark, cfg.path("assignments"))
    recs = read_table(spark, cfg.path("recommendations"))
    model = load_model(spark, cfg.path("model"))
    assert arms.count() == model.users.count() and result.users_by_arm[CONTROL] == arms.where("arm = 'control'").count()
    assert {r.user_id: r.arm for r in arms.collect()} == {
        r.user_id: arm_of(cfg.recommend.holdout, r.user_id) for r in model.users.collect()
    }
    control = arms.where(F.col("arm") == CONTROL).select("user_id")
    expected = popular_lists(model, control, cfg.recommend.n).select("user_id", "rank", "item_id", "score", "source")
    got = recs.where(F.col("arm") == CONTROL).select("user_id", "rank", "item_id", "score", "source")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert recs.where(F.col("arm") == TREATMENT).where(F.col("source") == "als").count() > 0
    assert recs.join(control, "user_id").where(F.col("source") == "als").count() == 0
    assert "arms (served " in "\n".join(result.lines())
    # Policy none: control users get no list, and are still in the exposure log.
    none = dataclasses.replace(
        cfg, recommend=dataclasses.replace(cfg.recommend, holdout=HoldoutConfig(fraction=0.3, salt="s1", policy="none"))
    )
    JOBS["recommend"](spark, none)
    recs = read_table(spark, cfg.path("recommendations"))
    assert recs.join(control, "user_id").count() == 0
    assert read_table(spark, cfg.path("assignments")).where(F.col("arm") == CONTROL).count() == control.count()


def test_recommend_for_some_users_reports_their_rows_and_keeps_everyone_elses(spark, held_out, tmp_path):
    cfg, first = held_out
    root = tmp_path / "out"
    shutil.copytree(cfg.output.root, root, symlinks=True)
    arms = read_table(spark, cfg.path("assignments"))
    t, c = (arms.where(F.col("arm") == a).orderBy("user_id").first().user_id for a in (TREATMENT, CONTROL))
    again = dataclasses.replace(
        cfg,
        output=dataclasses.replace(cfg.output, root=str(root)),
        recommend=dataclasses.replace(cfg.recommend, users=[t, c], run_date=first.run_date),
    )
    others = ~F.col("user_id").isin(t, c)
    before = read_table(spark, again.path("recommendations")).where(others).localCheckpoint()
    result = JOBS["recommend"](spark, again)
    recs = read_table(spark, again.path("recommendations"))
    asked = recs.where(~others)
    assert result.users_by_arm == {TREATMENT: 1, CONTROL: 1}  # the two users asked for, not the whole day
    assert result.rows_by_source == {r.source: r["count"] for r in asked.groupBy("source").count().collect()}
    assert sum(result.rows_by_source.values()) == asked.count() == 2 * cfg.recommend.n
    assert_df_equality(recs.where(others), before, ignore_row_order=True)  # everyone else's rows of the day stay


def test_the_run_report_shows_the_effect_of_the_lists_the_run_served(spark, served_root, tmp_path):
    """The report of a pipeline run finds the effect run on its recommend stage's lists (the
    seven users): the overall table in points, the forest plot, the windows not yet observable;
    before any effect run, the section says which command measures it."""
    cfg = dataclasses.replace(
        served_root,
        tracking=dataclasses.replace(served_root.tracking, enabled=True, uri=f"sqlite:///{tmp_path}/mlflow.db"),
    )
    with mlflow_state():
        tracking.start(cfg)
        with tracking.tracked_run(cfg, "pipeline") as pipeline, tracking.tracked_run(cfg, "recommend", nested=True):
            served = tracking.current_run_id()
        write_report(pipeline, cfg.tracking.experiment, out=str(tmp_path / "before.html"))
        before = (tmp_path / "before.html").read_text()
        assert f"run `recsys-spark effect --run-id {served}`" in before
        arms = read_table(spark, cfg.path("assignments")).withColumn("run_id", F.lit(served))
        write_table(arms.localCheckpoint(), cfg.path("assignments"), "run_date")
        with tracking.tracked_run(cfg, "effect"):
            JOBS["effect"](spark, cfg)
        write_report(pipeline, cfg.tracking.experiment, out=str(tmp_path / "after.html"))
        page = (tmp_path / "after.html").read_text()
    section = page.split("<h2>Effect of recommendations</h2>")[1].split("<h2>")[0]
    assert "4 treatment vs 3 control users" in section and "not yet observable" in section and "14,28 days" in section
    rows = re.findall(r"<tr>\s*<td>(.*?)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td>", section, re.S)
    # Returned within 7 days: 1/2 vs 1/3, +16.67 points (the numbers worked by hand above).
    assert ("returned (pp)", "7", "16.6667") in rows and ("purchases", "7", "0.5000") in rows, rows
    png = re.search(r'alt="effect forest plot by window and cohort" src="data:image/png;base64,([^"]+)"', section)
    assert png and base64.b64decode(png.group(1)).startswith(b"\x89PNG")


@pytest.mark.slow
def test_the_effect_command_exits_2_with_one_line_when_there_is_no_follow_up(spark, served_root, tmp_path):
    """What a user sees from the shell: the one-line error and exit code 2, not a traceback."""
    late = read_table(spark, served_root.path("assignments")).withColumn("run_date", F.lit(day(10)))
    write_table(late.localCheckpoint(), served_root.path("assignments"), "run_date")  # served on the data's last day
    out = cli("effect", *sets({**TINY, "output.root": served_root.output.root}), cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: no follow-up data: the events end 2026-03-21 and run run-1 served on 2026-03-21; ingest the days "
        "after 2026-03-21 first (the shortest window, 7 days, needs events to 2026-03-28)"
    ], out.stderr[-2000:]
