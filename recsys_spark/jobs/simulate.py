"""simulate: the feedback loop with a known effect, round after round.

Each round runs the pipeline as production would: train on the events so far, recommend with
both arms (serving date = the data's last day), then the simulator (simulate.py) draws the next
`simulate.days` days of events in response to what each user was served and appends them to the
raw input as new date partitions; ingest reads them, and `effect` measures the round against the
simulator's exact true effect. The rounds go to `simulate/rounds`, one row each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.analytics.simulator import (
    base_return,
    cluster_table,
    draw_events,
    matches,
    responding,
    user_states,
    with_list,
)
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events.synthetic import Catalog, make_catalog
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.effect import effect
from recsys_spark.jobs.generate import generate_if_missing
from recsys_spark.jobs.ingest import ingest
from recsys_spark.jobs.recommend import recommend
from recsys_spark.jobs.train import train
from recsys_spark.mlops import tracking
from recsys_spark.recs.model import load_model
from recsys_spark.recs.topn import popular_lists, recommend_users
from recsys_spark.results import EffectResult, SimulateResult

log = logging.getLogger("recsys_spark")


def simulate(spark: SparkSession, cfg: Config, rounds: int = 1) -> SimulateResult:
    h, s = cfg.recommend.holdout, cfg.simulate
    if h.fraction <= 0:
        raise RecsysError(
            "simulate needs a control arm: set recommend.holdout.fraction (e.g. 0.5 for a small simulation) "
            "and recommend.holdout.salt"
        )
    if rounds < 1:
        raise RecsysError(f"--rounds must be at least 1, got {rounds}")
    generate_if_missing(spark, cfg)
    catalog = make_catalog(cfg.generate)
    clusters = cluster_table(catalog, spark).cache()
    ingest(spark, cfg)
    out = []
    for r in range(1, rounds + 1):
        with tracking.tracked_run(cfg, f"round-{r}", nested=True):  # each round's stages log to a run of its own
            out.append(_run_round(spark, cfg, r, rounds, catalog, clusters))
            tracking.log_metrics({k: v for k, v in out[-1].items() if isinstance(v, float)})
    clusters.unpersist()
    result = SimulateResult(
        effect_strength=s.effect, days=s.days, rounds=out, paths={"rounds": cfg.path(names.SIMULATE_ROUNDS)}
    )
    write_table(spark.createDataFrame(out), cfg.path(names.SIMULATE_ROUNDS), whole_table=True)
    return result


def _run_round(spark: SparkSession, cfg: Config, r: int, rounds: int, catalog: Catalog, clusters: DataFrame) -> dict:
    """Round r: train, serve both arms, draw the responses, ingest them, measure; the round's row."""
    h, s, n = cfg.recommend.holdout, cfg.simulate, cfg.recommend.n
    events = read_table(spark, cfg.path(names.EVENTS))
    served: dt.date = events.agg(F.max("event_date")).first()[0]
    log.info("[simulate] round %d/%d: train, serve on %s, then %d days of responses", r, rounds, served, s.days)
    day = dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, run_date=served))
    train(spark, day)
    recommend(spark, day)
    model = load_model(spark, cfg.path(names.MODEL))
    assigned = read_table(spark, cfg.path(names.ASSIGNMENTS)).where(F.col("run_date") == F.lit(served))
    users = assigned.select("user_id")
    treated_list = recommend_users(model, users, n).select("user_id", "item_id")
    control_list = (
        popular_lists(model, users, n).select("user_id", "item_id") if h.policy == "popular" else treated_list.limit(0)
    )
    states = user_states(events, clusters, served)
    m_t = matches(treated_list, states, clusters).select(
        "user_id", F.col("matches").alias("m_t"), F.col("matching").alias("match_t")
    )
    m_c = matches(control_list, states, clusters).select(
        "user_id", F.col("matches").alias("m_c"), F.col("matching").alias("match_c")
    )
    p0 = base_return(F.col("activity"), s.days)
    u = (
        assigned.select("user_id", "arm")
        .join(states, "user_id", "left")
        .fillna({"activity": 0.0, "taste": -1})
        .join(m_t, "user_id", "left")
        .join(m_c, "user_id", "left")
        .withColumn("p_t", with_list(p0, F.col("m_t"), s.effect, n))
        .withColumn("p_c", with_list(p0, F.col("m_c"), s.effect, n))
        .cache()
    )
    truth = u.agg(F.avg(F.col("p_t") - F.col("p_c"))).first()[0]
    respond = responding(u)
    new = draw_events(respond, catalog, served, s.days, s.seed, r)
    write_table(new, cfg.input_path, names.EVENT_DATE)  # the next period's raw partitions, beside the history
    u.unpersist()
    ingest(spark, cfg)
    measured = effect(
        spark,
        dataclasses.replace(cfg, effect=dataclasses.replace(cfg.effect, windows=[s.days], served_date=served)),
    )
    row = _round(r, served, truth, measured, s.days)
    log.info("[simulate] round %d: true effect %+.4f, estimate %+.4f", r, truth, row["estimate"])
    return row


def _round(r: int, served: dt.date, truth: float, measured: EffectResult, days: int) -> dict:
    est = next((e for e in measured.overall() if e["outcome"] == "return" and e["window_days"] == days), None)
    if est is None:
        raise RecsysError(
            f"simulate round {r}: the {days}-day window after {served} is not observable (the data ends "
            f"{measured.data_end}): too few users to fill every simulated day; raise generate.users"
        )
    return {
        "round": r,
        "served_date": served,
        "users_treatment": est["n_treatment"],
        "users_control": est["n_control"],
        "true_effect": float(truth),
        "estimate": est["effect"],
        "ci_low": est["ci_low"],
        "ci_high": est["ci_high"],
        "covered": bool(est["ci_low"] <= truth <= est["ci_high"]),
        "estimate_cuped": est["effect_cuped"],
        "ci_low_cuped": est["ci_low_cuped"],
        "ci_high_cuped": est["ci_high_cuped"],
        "covered_cuped": bool(est["ci_low_cuped"] <= truth <= est["ci_high_cuped"]),
        "variance_ratio": est["variance_ratio"],
    }
