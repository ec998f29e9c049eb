"""`python -m bench [--events N] [--stages ...]`: time each stage beside its baseline, in one run.

Generated data of the given size is made once under bench/results/data-<N> and reused. The table
printed names the machine and the data size; results also go to bench/results/<stamp>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

from recsys_spark.config import load_config
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.session import build_session
from recsys_spark.jobs.runner import JOBS

from .als_settings import print_sweep, sweep
from .common import RESULTS, data_overrides, machine, timed, user_items


def stage_row(stage: str, rows: int, seconds: float, baseline: str, baseline_seconds: float) -> dict:
    """One row of the results table: a stage's time beside its baseline's, measured in the same run."""
    return {
        "stage": stage,
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "baseline": baseline,
        "baseline_seconds": round(baseline_seconds, 2),
        "ratio": round(seconds / baseline_seconds, 2),
    }


def clean_events(spark, cfg):
    """The clean events of the benchmark's data set, ingested first when absent."""
    from recsys_spark import names
    from recsys_spark.infra.tables import read_table

    if not path_exists(spark, cfg.path(names.EVENTS)):
        JOBS["ingest"](spark, cfg)
    return read_table(spark, cfg.path(names.EVENTS))


def bench_ingest(spark, cfg, args) -> list[dict]:
    """Ingest (validate, dedupe, write clean + quarantine) vs a plain Parquet read-and-write."""
    secs, out = timed(lambda: JOBS["ingest"](spark, cfg), "ingest job")
    rows = out.rows_read
    base, _ = timed(
        lambda: (
            spark.read.parquet(cfg.input_path)
            .write.mode("overwrite")
            .partitionBy("event_date")
            .parquet(cfg.path("bench_copy"))
        ),
        "baseline: plain Parquet copy",
    )
    return [stage_row("ingest", rows, secs, "parquet copy", base)]


def bench_train(spark, cfg, args) -> list[dict]:
    """Id mapping vs StringIndexer x2, ALS fit, evaluation, and fast vs naive top-N, on one data set."""
    from pyspark import StorageLevel
    from pyspark.ml.feature import StringIndexer
    from pyspark.sql import functions as F

    from recsys_spark.infra.tables import read_table
    from recsys_spark.recs.interactions import build_id_map, build_interactions, index_interactions
    from recsys_spark.recs.model import fit_als
    from recsys_spark.recs.split import default_cutoff, temporal_split
    from recsys_spark.recs.topn import top_n, top_n_naive
    from recsys_spark.recs.training import evaluate

    if not path_exists(spark, cfg.path("events")):
        JOBS["ingest"](spark, cfg)
    events = read_table(spark, cfg.path("events")).cache()
    n_events = events.count()
    last = events.agg(F.max("event_ts")).first()[0]

    def ours():
        pairs = build_interactions(events, cfg.interactions, cfg.events.weights, last)
        idx = index_interactions(
            pairs, build_id_map(pairs, "user_id", "user_idx"), build_id_map(pairs, "item_id", "item_idx")
        )
        return idx.persist(StorageLevel.MEMORY_AND_DISK).count(), idx

    def indexer():
        pairs = build_interactions(events, cfg.interactions, cfg.events.weights, last)
        for col in ("user", "item"):
            pairs = StringIndexer(inputCol=f"{col}_id", outputCol=f"{col}_idx").fit(pairs).transform(pairs)
        return pairs.select("user_idx", "item_idx", "confidence").persist(StorageLevel.MEMORY_AND_DISK).count()

    t_idx, (n_pairs, inter) = timed(ours, "id mapping + aggregation")
    t_si, _ = timed(indexer, "baseline: StringIndexer x2")
    model, t_fit, settings = sweep(inter, cfg.als, args.rounds)
    seen = inter.select("user_idx", "item_idx").cache()
    seen.count()

    def fast(block=None):
        return (
            top_n(model.userFactors, model.itemFactors, seen, 10, block=block)
            .write.format("noop")
            .mode("overwrite")
            .save()
        )

    fast()  # warm-up: Python workers and Arrow, so the first timed top-N is not the one that pays for them
    t_fast, _ = timed(fast, "top-10 for all users")
    t_naive, _ = timed(
        lambda: top_n_naive(model, seen, 10).write.format("noop").mode("overwrite").save(),
        "baseline: recommendForAllUsers + anti-join",
    )
    t_1024, _ = timed(lambda: fast(1024), "top-10 with 1024-user blocks")
    cutoff = default_cutoff(last, cfg.split.test_days)
    tr_ev, te_ev = temporal_split(events, cutoff, cfg.split.test_days)
    users = build_id_map(tr_ev, "user_id", "user_idx")
    items = build_id_map(tr_ev, "item_id", "item_idx")
    tr = index_interactions(
        build_interactions(tr_ev, cfg.interactions, cfg.events.weights, cutoff), users, items
    ).cache()
    te = index_interactions(build_interactions(te_ev, cfg.interactions, cfg.events.weights, cutoff), users, items)
    m2 = fit_als(tr, cfg.als, implicit=True)
    t_eval, ev = timed(lambda: evaluate(m2, tr, te, cfg.train.k), "evaluation")
    t_impl_fit, t_impl_rec = implicit_baselines(cfg, inter, model)

    def row(stage, secs, base_name, base):
        return {
            "stage": stage,
            "rows": n_pairs,
            "seconds": round(secs, 2),
            "rows_per_s": round(n_pairs / secs),
            "baseline": base_name,
            "baseline_seconds": round(base, 2) if base else 0.0,
            "ratio": round(secs / base, 2) if base else 0.0,
        }

    print(f"{n_events:,} events -> {n_pairs:,} interactions; rank {cfg.als.rank}, {cfg.als.max_iter} iterations")
    print("quality (temporal split):", {k: round(v, 4) for k, v in ev.metrics.items()})
    print(f"id mapping + aggregation is {t_idx / t_fit:.0%} of the ALS fit time")
    print_sweep(settings)
    spark_defaults = next(r for r in settings if r["setting"].startswith("Spark's own"))
    return [
        row("id_mapping", t_idx, "StringIndexer x2", t_si),
        row("als_fit", t_fit, "implicit fit", t_impl_fit),
        row("als_fit", t_fit, "Spark ALS defaults", spark_defaults["seconds"]),
        row("top10_all", t_fast, "naive Spark", t_naive),
        row("top10_all", t_fast, "implicit recommend", t_impl_rec),
        row("top10_all", t_fast, "1024-user blocks", t_1024),
        row("evaluate", t_eval, "", 0),
        *({"stage": "als_fit_setting", "rows": n_pairs, **r} for r in settings),
    ]


def implicit_baselines(cfg, inter, model) -> tuple[float, float]:
    """`implicit` (CPU, 2 threads) on the same interactions: its own fit, and its recommend on Spark's factors."""
    from implicit.cpu.als import AlternatingLeastSquares

    ui = user_items(inter)
    a = cfg.als
    als = AlternatingLeastSquares(
        factors=a.rank,
        regularization=a.reg_param,
        alpha=a.alpha,
        iterations=a.max_iter,
        num_threads=2,
        random_state=a.seed,
        calculate_training_loss=False,
    )
    t_fit, _ = timed(lambda: als.fit(ui, show_progress=False), "baseline: implicit fit")
    recommend = implicit_recommend(cfg, ui, model)
    t_rec, _ = timed(recommend, "baseline: implicit recommend")
    return t_fit, t_rec


def implicit_recommend(cfg, ui, model):
    """implicit's filtered top-10 for every user on Spark's factors, as a function to time."""
    import numpy as np
    from implicit.cpu.als import AlternatingLeastSquares

    n_users, n_items = ui.shape
    a = cfg.als
    uf = model.userFactors.toPandas()
    itf = model.itemFactors.toPandas()
    U = np.zeros((n_users, a.rank), np.float32)
    V = np.zeros((n_items, a.rank), np.float32)
    U[uf.id.to_numpy()] = np.vstack(uf.features.to_numpy())
    V[itf.id.to_numpy()] = np.vstack(itf.features.to_numpy())
    spark_factors = AlternatingLeastSquares(factors=a.rank, num_threads=2)
    spark_factors.user_factors, spark_factors.item_factors = U, V
    users = np.arange(n_users)
    return lambda: spark_factors.recommend(users, ui[users], N=10, filter_already_liked_items=True)


def bench_topn(spark, cfg, args) -> list[dict]:
    """top-10 with seen items excluded vs implicit's filtered recommend on the same factors, and the
    same top-10 with explanations (`because`) vs without, alternated `args.repeats` times after one
    warm-up each: one row per repeat, so run-to-run spread shows."""
    import numpy as np
    from pyspark.sql import functions as F

    from recsys_spark.recs.interactions import prepare_interactions
    from recsys_spark.recs.kernels import Explain
    from recsys_spark.recs.model import fit_als
    from recsys_spark.recs.topn import top_n

    events = clean_events(spark, cfg)
    last = events.agg(F.max("event_ts")).first()[0]
    inter = prepare_interactions(events, cfg.interactions, cfg.events.weights, last).pairs  # persisted
    n_pairs = inter.count()
    _, model = timed(lambda: fit_als(inter, cfg.als, implicit=True), "ALS fit (the factors both sides score)")
    seen = inter.select("user_idx", "item_idx").cache()
    seen.count()

    def ours():
        return top_n(model.userFactors, model.itemFactors, seen, 10).write.format("noop").mode("overwrite").save()

    theirs = implicit_recommend(cfg, user_items(inter), model)
    weighted = inter.select("user_idx", "item_idx", F.col("confidence").alias("weight")).cache()
    n_items = weighted.agg(F.max("item_idx")).first()[0] + 1
    labels = np.array([f"i{i}" for i in range(n_items)], object)
    how = Explain(
        implicit=True,
        alpha=cfg.als.alpha,
        reg_param=cfg.als.reg_param,
        item_ids=labels,
        names=np.full(n_items, None, object),
    )

    def explained():
        return (
            top_n(model.userFactors, model.itemFactors, weighted, 10, explain=how)
            .write.format("noop")
            .mode("overwrite")
            .save()
        )

    ours(), theirs(), explained()  # warm-up: Python workers, Arrow, implicit's thread pool
    rows = []
    for i in range(args.repeats):
        t_ours, _ = timed(ours, f"top-10 for all users, repeat {i + 1}")
        t_theirs, _ = timed(theirs, f"baseline: implicit recommend, repeat {i + 1}")
        t_why, _ = timed(explained, f"top-10 with explanations (because), repeat {i + 1}")
        rows.append(
            {
                "stage": f"top10_rep{i + 1}",
                "rows": n_pairs,
                "seconds": round(t_ours, 2),
                "rows_per_s": round(n_pairs / t_ours),
                "baseline": "implicit recommend",
                "baseline_seconds": round(t_theirs, 2),
                "ratio": round(t_ours / t_theirs, 2),
            }
        )
        rows.append(
            {
                "stage": f"top10_explained_rep{i + 1}",
                "rows": n_pairs,
                "seconds": round(t_why, 2),
                "rows_per_s": round(n_pairs / t_why),
                "baseline": "top-10 without explanations",
                "baseline_seconds": round(t_ours, 2),
                "ratio": round(t_why / t_ours, 2),
            }
        )
    return rows


def peak_memory() -> str:
    """Peak resident memory of this Python process and of the Spark driver JVM (local mode: all of Spark)."""
    import resource

    py = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    jvm = "?"
    try:
        from pyspark import SparkContext

        pid = SparkContext._jvm.java.lang.ProcessHandle.current().pid()
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM"):
                jvm = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except Exception:  # best effort on non-Linux
        pass
    return f"python {py:.1f} GiB, JVM {jvm}"


DUCKDB_RETENTION = """
WITH act AS (SELECT DISTINCT user_id, CAST(date_trunc('week', event_ts) AS DATE) AS wk \
FROM read_parquet('{path}/*/*.parquet')),
first AS (SELECT user_id, min(wk) AS cohort FROM act GROUP BY user_id),
a AS (SELECT act.user_id, cohort, CAST((wk - cohort) / 7 AS INTEGER) AS period FROM act JOIN first USING (user_id)),
sizes AS (SELECT cohort, count(*) AS cohort_size FROM a WHERE period = 0 GROUP BY cohort),
grid AS (SELECT cohort, cohort_size, unnest(range(0, \
CAST((CAST(date_trunc('week', DATE '{end}') AS DATE) - cohort) / 7 AS INTEGER) + 1)) AS period FROM sizes),
bounded AS (SELECT cohort, period, count(*) AS n FROM a GROUP BY cohort, period),
last AS (SELECT cohort, max(period) AS lp FROM a GROUP BY user_id, cohort),
unb AS (SELECT g.cohort, g.period, count(l.lp) AS n FROM grid g \
LEFT JOIN last l ON l.cohort = g.cohort AND l.lp >= g.period GROUP BY g.cohort, g.period)
SELECT g.cohort, g.cohort_size, g.period, coalesce(b.n, 0) AS active_users, 'bounded' AS kind \
FROM grid g LEFT JOIN bounded b USING (cohort, period)
UNION ALL SELECT g.cohort, g.cohort_size, g.period, u.n, 'unbounded' FROM grid g JOIN unb u USING (cohort, period)
"""


def bench_retention(spark, cfg, args) -> list[dict]:
    """Weekly cohort retention (both kinds) in Spark vs the same query in DuckDB on the same Parquet."""
    import duckdb
    from pyspark.sql import functions as F

    from recsys_spark.analytics.cohorts import cohort_retention, user_activity

    events = clean_events(spark, cfg)
    rows = events.count()
    end = events.agg(F.max("event_date")).first()[0]
    t_spark, ours = timed(
        lambda: cohort_retention(user_activity(events, "week"), F.lit(end), "week").toPandas(),
        "weekly retention (Spark)",
    )
    path = cfg.path("events").replace("file:", "")
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    t_duck, theirs = timed(
        lambda: con.execute(DUCKDB_RETENTION.format(path=path, end=end)).df(), "baseline: weekly retention (DuckDB)"
    )
    key = ["cohort", "period", "kind"]
    a = ours.sort_values(key).reset_index(drop=True)[key + ["active_users"]]
    b = (
        theirs.assign(cohort=theirs.cohort.astype("object"))
        .sort_values(key)
        .reset_index(drop=True)[key + ["active_users"]]
    )
    same = len(a) == len(b) and (a.active_users.to_numpy() == b.active_users.to_numpy()).all()
    print(f"retention cells: Spark {len(a)}, DuckDB {len(b)}; identical counts: {same}")
    return [stage_row("retention", rows, t_spark, "DuckDB (2 threads)", t_duck)]


def bench_effect(spark, cfg, args) -> list[dict]:
    """The effect job beside the retention job, whole (reads, Spark work, writes), on the same clean events,
    alternated twice; the best of each is compared.

    The exposure log is every user of the events, assigned at fraction 0.1, served 28 days before
    the data's last day so that every window (7, 14, 28 days) is observable.
    """
    import dataclasses
    import datetime as dt

    from pyspark.sql import functions as F

    from recsys_spark import names
    from recsys_spark.analytics.arms import assign_arms
    from recsys_spark.config import HoldoutConfig
    from recsys_spark.infra.tables import write_table

    events = clean_events(spark, cfg)
    rows = events.count()
    served = events.agg(F.max("event_date")).first()[0] - dt.timedelta(days=max(cfg.effect.windows))
    users = events.select("user_id").distinct()
    arms = assign_arms(users, HoldoutConfig(fraction=0.1, salt="bench")).select(
        "user_id",
        "arm",
        F.lit(0.1).alias("fraction"),
        F.lit("bench").alias("salt_id"),
        F.lit("bench").alias("run_id"),
        F.lit(served).alias("run_date"),
    )
    write_table(arms, cfg.path(names.ASSIGNMENTS), names.RUN_DATE)
    measured = dataclasses.replace(cfg, effect=dataclasses.replace(cfg.effect, served_date=served))
    t_eff, t_ret = [], []  # alternated twice, effect first, so neither has the warm JVM alone; best of each
    for i in (1, 2):
        secs, out = timed(lambda: JOBS["effect"](spark, measured), f"effect job (served {served}), {i} of 2")
        t_eff.append(secs)
        t_ret.append(timed(lambda: JOBS["retention"](spark, cfg), f"retention job (baseline), {i} of 2")[0])
    t_eff, t_ret = min(t_eff), min(t_ret)
    print(f"effect: {sum(out.arms.values()):,} assigned users, {len(out.estimates)} estimates; {out.lines()[0]}")
    return [stage_row("effect", rows, t_eff, "retention job", t_ret)]


BENCHES = {
    "ingest": bench_ingest,
    "train": bench_train,
    "topn": bench_topn,
    "retention": bench_retention,
    "effect": bench_effect,
}


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S"
    )  # the jobs' progress lines
    logging.getLogger("py4j").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--events", type=int, default=1_000_000)  # make bench: about 6 minutes on 2 cores
    p.add_argument("--stages", default=",".join(BENCHES))
    p.add_argument("--master", default="local[2]")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--rounds", type=int, default=1, help="rounds of the ALS settings sweep (train stage)")
    p.add_argument(
        "--repeats", type=int, default=3, help="alternated timings of top-N and implicit's recommend (topn stage)"
    )
    p.add_argument("--json", type=Path, help="results file (default: bench/results/<time>.json)")
    p.add_argument("--native-blas", default="auto", help="spark.native_blas for this run: auto, off or a library path")
    p.add_argument(
        "--blas-threads", type=int, default=1, help="spark.blas_threads for this run (OpenBLAS threads per task)"
    )
    args = p.parse_args()
    cfg = load_config(
        None,
        [
            f"spark.master={args.master}",
            "spark.log_level=ERROR",
            *data_overrides(args.events),
            "spark.driver_memory=8g",
            f"als.rank={args.rank}",
            "spark.conf.spark.ui.showConsoleProgress=false",
            f"spark.native_blas={args.native_blas}",
            f"spark.blas_threads={args.blas_threads}",
        ],
    )
    spark = build_session(cfg)
    from recsys_spark.infra.blas import describe

    linalg = describe(spark)
    if not path_exists(spark, cfg.input_path):
        secs, _ = timed(lambda: JOBS["generate"](spark, cfg), "generate")
        print(f"generated {args.events:,} events in {secs:.1f} s")
    rows = []
    for name in args.stages.split(","):
        rows += BENCHES[name](spark, cfg, args)
    memory = peak_memory()
    spark.stop()
    print(
        f"\nmachine: {machine()}; master {args.master}; data: {args.events:,} generated events requested; "
        f"peak memory: {memory}"
    )
    print(f"linear algebra: {linalg}")
    print(f"{'stage':<12}{'rows':>12}{'seconds':>10}{'rows/s':>12}  {'baseline':<19}{'b.seconds':>10}{'ratio':>8}")
    for r in (r for r in rows if "setting" not in r):  # the settings sweep printed its own table
        base = f"{r['baseline_seconds']:>10.1f}{r['ratio']:>7.2f}x" if r["baseline"] else f"{'-':>10}{'-':>8}"
        print(f"{r['stage']:<12}{r['rows']:>12,}{r['seconds']:>10.1f}{r['rows_per_s']:>12,}  {r['baseline']:<19}{base}")
    RESULTS.mkdir(exist_ok=True)
    out = args.json or RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "machine": machine(),
                "events": args.events,
                "master": args.master,
                "peak_memory": memory,
                "linear_algebra": linalg,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    log_to_mlflow(args, rows, memory, out)


def log_to_mlflow(args, rows: list[dict], memory: str, result_file: Path) -> None:
    """One MLflow run per benchmark invocation, in the experiment `recsys-spark-bench`."""
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"))
    mlflow.set_experiment("recsys-spark-bench")
    with mlflow.start_run(run_name=f"bench-{args.events}", tags={"job": "bench"}):
        mlflow.log_params(
            {
                "events": args.events,
                "master": args.master,
                "stages": args.stages,
                "rank": args.rank,
                "machine": machine(),
                "peak_memory": memory,
            }
        )
        for i, r in enumerate(r for r in rows if "setting" in r):
            mlflow.log_metrics({f"seconds_als_fit_setting_{i}": r["seconds"], f"ratio_als_fit_setting_{i}": r["ratio"]})
        for r in (r for r in rows if "setting" not in r):
            name = f"{r['stage']}_vs_{r['baseline'].split()[0].lower()}" if r["baseline"] else r["stage"]
            mlflow.log_metrics(
                {f"seconds_{r['stage']}": r["seconds"], **({f"ratio_{name}": r["ratio"]} if r["baseline"] else {})}
            )
        mlflow.log_artifact(str(result_file))


if __name__ == "__main__":
    main()
