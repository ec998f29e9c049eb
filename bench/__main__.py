"""`python -m bench [--events N] [--stages ...]`: time each stage beside its baseline, in one run.

Generated data of the given size is made once under bench/results/data-<N> and reused. The table
printed names the machine and the data size; results also go to bench/results/<stamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from recsys_spark import stages
from recsys_spark.config import load_config
from recsys_spark.session import build_session
from recsys_spark.tables import path_exists

RESULTS = Path(__file__).parent / "results"


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.machine()}, Python {platform.python_version()}"


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench_ingest(spark, cfg) -> list[dict]:
    """Ingest (validate, dedupe, write clean + quarantine) vs a plain Parquet read-and-write."""
    secs, out = timed(lambda: stages.ingest(spark, cfg))
    rows = out["rows_read"]
    base, _ = timed(lambda: spark.read.parquet(cfg.input_path).write.mode("overwrite").partitionBy("event_date").parquet(cfg.path("bench_copy")))
    return [
        {"stage": "ingest", "rows": rows, "seconds": round(secs, 2), "rows_per_s": round(rows / secs), "baseline": "parquet copy",
         "baseline_seconds": round(base, 2), "ratio": round(secs / base, 2)},
    ]


BENCHES = {"ingest": bench_ingest}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--stages", default=",".join(BENCHES))
    p.add_argument("--master", default="local[2]")
    args = p.parse_args()
    users = max(200, args.events // 20)
    root = RESULTS / f"data-{args.events}"
    cfg = load_config(None, [
        f"spark.master={args.master}", "spark.log_level=ERROR", f"output.root={root}",
        f"generate.events={args.events}", f"generate.users={users}", f"generate.items={max(100, users // 5)}",
        "spark.driver_memory=8g",
    ])
    spark = build_session(cfg)
    if not path_exists(spark, cfg.input_path):
        secs, _ = timed(lambda: stages.generate(spark, cfg))
        print(f"generated {args.events:,} events in {secs:.1f} s")
    rows = []
    for name in args.stages.split(","):
        rows += BENCHES[name](spark, cfg)
    spark.stop()
    print(f"\nmachine: {machine()}; master {args.master}; data: {args.events:,} generated events requested")
    print(f"{'stage':<12}{'rows':>12}{'seconds':>10}{'rows/s':>12}  {'baseline':<16}{'b.seconds':>10}{'ratio':>8}")
    for r in rows:
        print(f"{r['stage']:<12}{r['rows']:>12,}{r['seconds']:>10.1f}{r['rows_per_s']:>12,}  {r['baseline']:<16}{r['baseline_seconds']:>10.1f}{r['ratio']:>7.2f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine(), "events": args.events, "master": args.master, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
