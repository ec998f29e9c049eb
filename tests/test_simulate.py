"""The simulated feedback loop (issue 29): users respond to what they were served, the pipeline
runs round after round on the growing raw input, and the effect estimate meets the simulator's
exact truth: with lists that change nothing the truth is 0 and the interval covers it; with a
strong response the effect is detected and covered. Deterministic: every draw is seeded."""

import dataclasses
import datetime as dt

import pytest
from pyspark.sql import functions as F

from recsys_spark.config import HoldoutConfig
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.simulate import simulate
from recsys_spark.results import SimulateResult

from support import small_config


def configured(root, effect: float):
    cfg = small_config(str(root))
    cfg.tune.enabled, cfg.model.family = False, "als"
    cfg.als.rank, cfg.als.max_iter = 8, 5
    cfg.recommend.n = 5
    cfg.split.test_days, cfg.split.followup_days = 7, 0
    cfg.recommend.holdout = HoldoutConfig(fraction=0.5, salt="sim-test")
    cfg.simulate = dataclasses.replace(cfg.simulate, effect=effect, days=7)
    cfg.tracking.enabled = False
    return cfg


@pytest.mark.slow  # several minutes: two simulations, three rounds of train, recommend, ingest and effect
def test_a_strong_response_is_detected_and_lists_that_change_nothing_give_an_interval_around_zero(spark, tmp_path):
    strong = configured(tmp_path / "strong", effect=3.0)
    result = simulate(spark, strong, rounds=2)
    assert isinstance(result, SimulateResult) and [r["round"] for r in result.rounds] == [1, 2]
    first, second = result.rounds
    assert second["served_date"] == first["served_date"] + dt.timedelta(days=7)
    for r in result.rounds:
        assert r["true_effect"] > 0.05, r  # matching lists raise the chance to return
        assert r["ci_low"] > 0 and r["covered"], r  # detected, and the interval holds the truth
        assert r["users_treatment"] > 100 and r["users_control"] > 100
    # The responses became raw date partitions after the history, and ingest took them in.
    events = read_table(spark, strong.path("events"))
    assert events.agg(F.max("event_date")).first()[0] == second["served_date"] + dt.timedelta(days=7)
    assert read_table(spark, strong.path("simulate/rounds")).count() == 2
    assert "covers it" in "\n".join(result.lines())

    null = configured(tmp_path / "null", effect=0.0)
    (r,) = simulate(spark, null, rounds=1).rounds
    assert r["true_effect"] == 0.0
    assert r["ci_low"] <= 0.0 <= r["ci_high"] and r["covered"], r
