"""`python -m bench.cluster --events 1000000 --workers 1,2`: the whole pipeline on a real standalone
cluster with 1 and with 2 workers, on the same data, to check the slope that README's capacity
projection assumes (each stage's time falls with the executors' cores).

Each worker count gets its own cluster (scripts/standalone-cluster.sh: workers of 1 core and
WORKER_MEMORY), the pipeline through `spark-submit jobs/pipeline.py` in client mode with the
built-in config (as bench.scale runs it), `--py-files dist/recsys_spark.zip`, tracking off, and
the raw events bench.scale generated for that size (generated here when missing). On a 2-core
machine the driver shares the cores with the executors, so 2 workers can gain at most 2x.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recsys_spark.jobs.runner import PIPELINE

from .common import RESULTS, data_overrides, machine

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "standalone-cluster.sh"
BIN = Path(sys.executable).parent
STAGES = [name for name, _ in PIPELINE if name != "generate"]


def raw_events(events: int) -> Path:
    """bench.scale's raw events for this size, generated locally when missing."""
    raw = RESULTS / f"data-{events}" / "raw"
    if not raw.exists():
        cmd = [sys.executable, "-m", "recsys_spark.cli", "generate", "--set", "spark.master=local[2]"]
        for s in data_overrides(events):
            cmd += ["--set", s]
        subprocess.run(cmd, check=True)
    return raw.resolve()


def run_on(
    workers: int, events: int, raw: Path, work: Path, executor_memory: str, driver_memory: str, extra: list[str]
) -> dict:
    """One pipeline run on a fresh cluster of `workers` workers; its stage seconds and wall time."""
    folder, out = work / f"cluster-{workers}", work / f"out-{workers}"
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable, "PYTHON": sys.executable}
    env["WORKER_MEMORY"] = env.get("WORKER_MEMORY", "4g")
    summary = work / f"summary-{workers}.json"
    sets = [
        f"input.path=file://{raw}",
        f"output.root=file://{out}",
        f"spark.checkpoint_dir=file://{work}/ckpt-{workers}",
        f"spark.shuffle_partitions={max(8, events // 1_250_000)}",
        "spark.conf.spark.ui.showConsoleProgress=false",
        "tracking.enabled=false",
        *extra,
    ]
    submit = [
        "--driver-memory",
        driver_memory,
        "--executor-cores",
        "1",
        "--executor-memory",
        executor_memory,
        "--total-executor-cores",
        str(workers),
        "--py-files",
        str(REPO / "dist" / "recsys_spark.zip"),
        str(REPO / "jobs" / "pipeline.py"),
        "--summary-json",
        str(summary),
    ]
    for s in sets:
        submit += ["--set", s]
    try:  # the stop line runs even when the start fails half-way
        start = ["bash", str(SCRIPT), "start", str(folder), str(workers)]
        master = subprocess.run(start, env=env, check=True, capture_output=True, text=True).stdout.strip()
        print(f"\n== {workers} worker(s), {events:,} events: spark-submit --master {master} ...", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run([str(BIN / "spark-submit"), "--master", master, *submit], env=env, cwd=work).returncode
        wall = time.perf_counter() - t0  # the job alone, not the cluster's stop
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], env=env, check=False)
    if code != 0:
        raise SystemExit(f"the pipeline on {workers} worker(s) failed with exit code {code}; logs in {folder}")
    stages = json.loads(summary.read_text())["stages"]
    train = stages["train"]
    return {
        "workers": workers,
        "wall_seconds": round(wall, 1),
        "seconds": {**{s: stages[s]["seconds"] for s in STAGES if s in stages}, **train["steps"]},
        "ndcg_at_10": train["quality"]["ndcg_at_10"],
    }


def report(results: list[dict], events: int, extra: list[str]) -> str:
    first = results[0]
    lines = [
        f"machine: {machine()}; standalone cluster on 127.0.0.1, workers of 1 core; {events:,} events; "
        f"built-in config, overrides: {' '.join(extra) or 'none'}",
        f"{'seconds':<22}" + "".join(f"{r['workers']:>10} wkr" for r in results) + "   speed-up vs first",
    ]
    for key in first["seconds"]:
        secs = [r["seconds"].get(key) for r in results]
        if None in secs:
            continue
        name = key if key in STAGES else f"  train: {key}"
        speedup = "  ".join(f"{secs[0] / s:.2f}x" if s else "-" for s in secs[1:])
        lines.append(f"{name:<22}" + "".join(f"{s:>14.1f}" for s in secs) + f"   {speedup}")
    walls = [r["wall_seconds"] for r in results]
    lines.append(
        f"{'whole run (wall)':<22}"
        + "".join(f"{s:>14.1f}" for s in walls)
        + "   "
        + "  ".join(f"{walls[0] / s:.2f}x" for s in walls[1:])
    )
    lines.append(f"{'NDCG@10':<22}" + "".join(f"{r['ndcg_at_10']:>14.4f}" for r in results))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.cluster")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts, one cluster each")
    p.add_argument("--executor-memory", default="3g", help="per executor; WORKER_MEMORY (default 4g) must hold it")
    p.add_argument("--driver-memory", default="6g")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides for every run")
    args = p.parse_args()
    subprocess.run(["make", "-s", "dist"], cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    raw = raw_events(args.events)
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        results = [
            run_on(int(w), args.events, raw, Path(tmp), args.executor_memory, args.driver_memory, args.set)
            for w in args.workers.split(",")
        ]
    text = report(results, args.events, args.set)
    print("\n" + text)
    out = RESULTS / f"cluster-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps({"machine": machine(), "events": args.events, "overrides": args.set, "results": results}, indent=2)
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
