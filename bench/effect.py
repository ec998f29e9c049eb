"""`python -m bench.effect [--seeds 100] [--effect 1.0] [--users 600]`: the effect estimator against a known truth.

One generated history (--users users, 15 events each, 56 days), one trained ALS model (tuning
off), and for every user both lists (the ALS list of the treatment arm and the control's popular
list) with their matches to the user's taste, computed once. Then per seed: a fresh salt assigns
the arms (fraction 0.5), the simulator (recsys_spark/analytics/simulator.py) draws the next 7 days in
response to what each user's arm was served, the responses are written as the events table's new
date partitions (clean by construction: `recsys-spark simulate` and its test run them through
ingest), and the effect job measures them from the tables. The truth of a seed is the
simulator's exact mean of p(treatment list) - p(control list) over that seed's users. Reported,
with simulate.effect = --effect and = 0: how many of the 95% intervals (plain and CUPED) cover the
truth, the mean CUPED variance ratio, and beside the null effect the with-a-hit-vs-without gap
that retention reports on the same history (an association: its distance from 0 is its bias).
One SparkSession for everything.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

from pyspark.sql import functions as F

from recsys_spark.analytics.arms import assign_arms
from recsys_spark.analytics.simulator import (
    base_return,
    cluster_table,
    draw_events,
    matches,
    responding,
    user_states,
    with_list,
)
from recsys_spark.config import HoldoutConfig, load_config
from recsys_spark.events.synthetic import make_catalog
from recsys_spark.infra.session import build_session
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.effect import effect
from recsys_spark.jobs.runner import JOBS
from recsys_spark.recs.model import load_model
from recsys_spark.recs.topn import popular_lists, recommend_users
from recsys_spark.results import RetentionResult

from .common import RESULTS, machine, timed

DAYS = 7


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--effect", type=float, default=1.0, help="simulate.effect of the non-null runs")
    ap.add_argument("--users", type=int, default=600)
    args = ap.parse_args()
    root = RESULTS / f"effect-{args.users}"
    cfg = load_config(
        None,
        [
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
            "spark.log_level=ERROR",
            "spark.conf.spark.ui.enabled=false",
            "tracking.enabled=false",
            f"output.root={root}",
            f"generate.users={args.users}",
            f"generate.events={args.users * 15}",
            f"generate.items={max(60, args.users // 5)}",
            "generate.clusters=6",
            "generate.days=56",
            "tune.enabled=false",
            "als.rank=8",
            "als.max_iter=5",
            "split.test_days=7",
            "split.followup_days=7",
            "recommend.n=10",
        ],
    )
    print(f"machine: {machine()}; {args.users} users, {args.users * 15} events generated; {args.seeds} seeds")
    t0 = time.perf_counter()
    spark = build_session(cfg)
    try:
        for name in ("generate", "ingest", "train", "retention"):
            _, out = timed(lambda name=name: JOBS[name](spark, cfg), name)
            if isinstance(out, RetentionResult):
                retention = out
        model = load_model(spark, cfg.path("model"))
        history = read_table(spark, cfg.path("events"))
        served = history.agg(F.max("event_date")).first()[0]
        catalog = make_catalog(cfg.generate)
        clusters = cluster_table(catalog, spark).cache()
        users = model.users.select("user_id")
        n = cfg.recommend.n
        states = user_states(history, clusters, served)
        m_t = matches(recommend_users(model, users, n).select("user_id", "item_id"), states, clusters)
        m_c = matches(popular_lists(model, users, n).select("user_id", "item_id"), states, clusters)
        base = (
            users.join(states, "user_id", "left")
            .fillna({"activity": 0.0, "taste": -1})
            .join(
                m_t.select("user_id", F.col("matches").alias("m_t"), F.col("matching").alias("match_t")),
                "user_id",
                "left",
            )
            .join(
                m_c.select("user_id", F.col("matches").alias("m_c"), F.col("matching").alias("match_c")),
                "user_id",
                "left",
            )
            .cache()
        )
        scratch = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, root=str(root / "scratch")))
        write_table(history, scratch.path("events"), "event_date", whole_table=True)
        report = {"machine": machine(), "users": args.users, "seeds": args.seeds, "served_date": str(served)}
        for strength in (args.effect, 0.0):
            p0 = base_return(F.col("activity"), DAYS)
            scored = base.withColumn("p_t", with_list(p0, F.col("m_t"), strength, n)).withColumn(
                "p_c", with_list(p0, F.col("m_c"), strength, n)
            )
            rows = []
            for seed in range(args.seeds):
                t1 = time.perf_counter()
                h = HoldoutConfig(fraction=0.5, salt=f"bench-effect-{seed}")
                assigned = assign_arms(scored, h).cache()
                truth = assigned.agg(F.avg(F.col("p_t") - F.col("p_c"))).first()[0]
                respond = responding(assigned)
                drawn = draw_events(respond, catalog, served, DAYS, seed, round_=int(strength * 1000) + 1)
                write_table(drawn, scratch.path("events"), "event_date")  # replaces the previous seed's days
                stamp = [F.lit(f"seed-{seed}").alias("run_id"), F.lit(served).alias("run_date")]
                write_table(assigned.select("user_id", "arm", *stamp), scratch.path("assignments"), whole_table=True)
                assigned.unpersist()
                m = dataclasses.replace(
                    scratch,
                    recommend=dataclasses.replace(scratch.recommend, holdout=h),
                    effect=dataclasses.replace(scratch.effect, windows=[DAYS], served_date=served),
                )
                est = next(e for e in effect(spark, m).overall() if e["outcome"] == "return")
                rows.append({"seed": seed, "truth": truth, **{k: est[k] for k in KEYS}})
                print(
                    f"[bench] effect={strength} seed {seed}: truth {truth:+.4f}, estimate {est['effect']:+.4f} "
                    f"[{est['ci_low']:+.4f}, {est['ci_high']:+.4f}] ({time.perf_counter() - t1:.1f} s)",
                    flush=True,
                )
            report[f"effect={strength}"] = summary(rows)
        gap = association_gap(retention)
        report["association_gap_with_vs_without_hit"] = gap
        report["seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        spark.stop()
    print(table(report))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "effect.json").write_text(json.dumps(report, indent=2, default=str))


KEYS = ("effect", "ci_low", "ci_high", "effect_cuped", "ci_low_cuped", "ci_high_cuped", "variance_ratio")


def summary(rows: list[dict]) -> dict:
    covered = sum(r["ci_low"] <= r["truth"] <= r["ci_high"] for r in rows)
    covered_cuped = sum(r["ci_low_cuped"] <= r["truth"] <= r["ci_high_cuped"] for r in rows)
    n = len(rows)
    return {
        "seeds": n,
        "covered": covered,
        "covered_cuped": covered_cuped,
        "mean_truth": sum(r["truth"] for r in rows) / n,
        "mean_estimate": sum(r["effect"] for r in rows) / n,
        "mean_variance_ratio": sum(r["variance_ratio"] for r in rows) / n,
        "rejects_zero": sum(r["ci_low"] > 0 or r["ci_high"] < 0 for r in rows),
    }


def association_gap(retention: RetentionResult) -> float | None:
    """Retention's came-back-with-a-hit minus without, weighted by evaluated users over cohorts."""
    rows = [q for q in retention.quality_by_cohort if q.get("retained_with_hit") is not None]
    rows = [q for q in rows if q.get("retained_without_hit") is not None]
    if not rows:
        return None
    w = sum(q["users_evaluated"] for q in rows)
    return sum((q["retained_with_hit"] - q["retained_without_hit"]) * q["users_evaluated"] for q in rows) / w


def table(r: dict) -> str:
    lines = [
        f"effect estimator vs the simulator's truth ({r['machine']}; {r['users']} users, {r['seeds']} seeds, "
        f"{r['seconds']} s in one SparkSession)",
        "| simulate.effect | mean true effect | mean estimate | 95% CI covers truth | CUPED CI covers | "
        "CUPED variance ratio | CI excludes 0 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key in (k for k in r if k.startswith("effect=")):
        s = r[key]
        lines.append(
            f"| {key[7:]} | {s['mean_truth'] * 100:+.2f} pp | {s['mean_estimate'] * 100:+.2f} pp | "
            f"{s['covered']}/{s['seeds']} | {s['covered_cuped']}/{s['seeds']} | {s['mean_variance_ratio']:.3f} | "
            f"{s['rejects_zero']}/{s['seeds']} |"
        )
    gap = r["association_gap_with_vs_without_hit"]
    if gap is not None:
        lines.append(
            f"retention's came-back-with-a-hit minus without on the same history: {gap * 100:+.2f} pp "
            "(an association; the null runs' true effect is 0)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
