import numpy as np
import pandas as pd
from chispa import assert_df_equality

from recsys_spark.config import GenerateConfig
from recsys_spark.events.schema import RAW_SCHEMA
from recsys_spark.events.synthetic import generate_chunk, generate_events, make_catalog
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS


def test_same_seed_same_events_other_seed_other_events(spark, cfg):
    a = generate_events(spark, cfg.generate)
    b = generate_events(spark, cfg.generate)
    assert_df_equality(a, b, ignore_row_order=True)
    cfg.generate.seed = 7
    c = generate_events(spark, cfg.generate)
    assert a.exceptAll(c).count() > 0


def test_schema_size_and_event_mix(spark, cfg):
    events = generate_events(spark, cfg.generate)
    assert events.drop("event_date").schema == RAW_SCHEMA
    n = events.count()
    assert 0.8 * cfg.generate.events < n < 1.2 * cfg.generate.events
    mix = {r.event_type: r["count"] / n for r in events.groupBy("event_type").count().collect()}
    assert mix["view"] > mix["click"] > mix["cart"] > mix["purchase"] > 0.005


def test_written_hive_partitioned_by_event_date(spark, cfg, tmp_path):
    JOBS["generate"](spark, cfg)
    parts = sorted(p.name for p in (tmp_path / "out" / "raw").iterdir() if p.is_dir())
    assert parts[0] == "event_date=2026-01-05"
    assert (tmp_path / "out" / "raw" / "_SUCCESS").exists()
    assert read_table(spark, cfg.input_path).count() == generate_events(spark, cfg.generate).count()


def _weekly_retention(events: pd.DataFrame) -> pd.DataFrame:
    events = events.dropna(subset=["user_id"])
    week = (events.event_ts - pd.Timestamp("2026-01-05")).dt.days // 7
    first = week.groupby(events.user_id).transform("min")
    active = pd.DataFrame({"cohort": first, "period": week - first, "user": events.user_id}).drop_duplicates()
    size = active[active.period == 0].groupby("cohort").user.count()
    return active.groupby(["cohort", "period"]).user.count().unstack().div(size, axis=0)


def test_weekly_retention_decays_and_later_cohorts_stay_longer():
    cfg = GenerateConfig(events=400_000, users=20_000, items=2000, days=112, users_per_chunk=20_000, bad_fraction=0)
    ret = _weekly_retention(generate_chunk(cfg, make_catalog(cfg), 0))
    mean = ret.mean()
    assert mean[1] < 0.6 and mean[4] < mean[1] and mean[8] < mean[4]
    early, late = ret.loc[0:3, 1].mean(), ret.loc[8:11, 1].mean()
    assert late > early
    assert not np.isnan(ret.loc[0, 15])
