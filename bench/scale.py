"""`python -m bench.scale --events 1000000,5000000,20000000`: the whole pipeline at several sizes.

Each size runs `recsys-spark run` in a process of its own (its own JVM), on data generated once
under bench/results/data-<N> (generation is timed on the first run only), then weekly retention
beside DuckDB and the effect job beside the retention job on the same clean events
(`python -m bench --stages retention,effect`). Printed: each
stage's seconds per size, seconds per million events, and growth against linear from the
smallest size; peak memory of the process tree and peak disk use, both sampled every second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from recsys_spark.jobs.runner import PIPELINE

from .common import RESULTS, data_overrides, machine

STAGES = [name for name, _ in PIPELINE]


class Sampler(threading.Thread):
    """Peak memory (PSS: shared pages split among the processes sharing them, so forked Python
    workers are not counted twice) of a process and its descendants, and peak disk used, sampled every second."""

    def __init__(self, pid: int, disk_path: Path) -> None:
        super().__init__(daemon=True)
        self.pid, self.disk_path, self.done = pid, disk_path, threading.Event()
        self.free0 = shutil.disk_usage(disk_path).free
        self.peak_rss = self.peak_disk = 0

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.peak_rss = max(self.peak_rss, sum(_pss(p) for p in _tree(self.pid)))
            self.peak_disk = max(self.peak_disk, self.free0 - shutil.disk_usage(self.disk_path).free)


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def _pss(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_size(events: int, driver_memory: str, extra: list[str]) -> dict:
    """One `recsys-spark run` at `events` events, then retention beside DuckDB and effect beside retention;
    seconds, memory and disk."""
    root = RESULTS / f"data-{events}"
    partitions = max(8, events // 1_250_000)
    sets = [
        *data_overrides(events),
        "spark.master=local[2]",
        f"spark.driver_memory={driver_memory}",
        f"spark.shuffle_partitions={partitions}",
        "spark.conf.spark.ui.showConsoleProgress=false",
        *extra,
    ]
    summary_file = RESULTS / f"scale-{events}-summary.json"
    cmd = [sys.executable, "-m", "recsys_spark.cli", "run", "--summary-json", str(summary_file)]
    for s in sets:
        cmd += ["--set", s]
    print(f"\n== {events:,} events: {' '.join(cmd[2:])}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=sys.stdout, stderr=sys.stderr)
    sampler = Sampler(proc.pid, RESULTS)
    sampler.start()
    code = proc.wait()
    sampler.done.set()
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"recsys-spark run at {events:,} events failed with exit code {code}")
    stages = json.loads(summary_file.read_text())["stages"]  # results.RunResult.to_json
    train = stages["train"]
    ret_file = RESULTS / f"scale-{events}-retention.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--events",
            str(events),
            "--stages",
            "retention,effect",
            "--json",
            str(ret_file),
        ],
        check=True,
    )
    retention, effect = json.loads(ret_file.read_text())["rows"]
    return {
        "events": events,
        "rows_clean": stages["ingest"]["rows_clean"],
        "interactions": train["interactions"],
        "users": train["users"],
        "items": train["items"],
        "shuffle_partitions": partitions,
        "wall_seconds": round(wall, 1),
        # generate runs only when the size's data are new
        "seconds": {
            **{name: s["seconds"] for name, s in stages.items() if name != "generate" or s["generated"]},
            **train["steps"],
        },
        "peak_rss_gib": round(sampler.peak_rss / 2**30, 1),
        "peak_disk_gib": round(sampler.peak_disk / 2**30, 2),
        "output_gib": round(sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**30, 2),
        "ndcg_at_10": train["quality"]["ndcg_at_10"],
        "baseline_ndcg_at_10": train["quality"]["baseline_ndcg_at_10"],
        "retention_spark_seconds": retention["seconds"],
        "retention_duckdb_seconds": retention["baseline_seconds"],
        "effect_seconds": effect["seconds"],
        "retention_job_seconds": effect["baseline_seconds"],
    }


def report(results: list[dict], extra: list[str]) -> str:
    """Seconds per stage and size, seconds per million events, and each size's growth over the first's."""
    first = results[0]
    lines = [
        f"machine: {machine()}; local[2]; overrides: {' '.join(extra) or 'none'} (spark.native_blas defaults to auto)",
        f"{'':<22}"
        + "".join(f"{r['events'] / 1e6:>10.0f}M ev" for r in results)
        + "   s/M events"
        + "   growth vs linear",
    ]
    rows = [
        ("clean events", lambda r: f"{r['rows_clean']:>13,}"),
        ("interactions", lambda r: f"{r['interactions']:>13,}"),
        ("users / items", lambda r: f"{r['users'] // 1000:>8}k/{r['items'] // 1000}k"),
    ]
    for name, fmt in rows:
        lines.append(f"{name:<22}" + "".join(fmt(r) for r in results))
    train_steps = [k for k in first["seconds"] if k not in STAGES]  # in the order the train stage ran them
    for key in [*STAGES, *train_steps]:
        secs = [r["seconds"].get(key) for r in results]
        if None in secs:  # a step that did not run at every size
            continue
        per_m = "  ".join(f"{s / (r['events'] / 1e6):.1f}" for s, r in zip(secs, results, strict=True))
        growth = "  ".join(
            f"{s / secs[0] / (r['events'] / first['events']):.2f}" if secs[0] else "-"
            for s, r in zip(secs[1:], results[1:], strict=True)
        )
        name = key if key in STAGES else f"  train: {key}"
        lines.append(f"{name:<22}" + "".join(f"{s:>13.1f}" for s in secs) + f"   {per_m}   {growth}")
    for name, key in (
        ("whole run (wall)", "wall_seconds"),
        ("retention: Spark", "retention_spark_seconds"),
        ("retention: DuckDB", "retention_duckdb_seconds"),
        ("effect job", "effect_seconds"),
        ("retention job", "retention_job_seconds"),
    ):
        lines.append(f"{name:<22}" + "".join(f"{r[key]:>13.1f}" for r in results))
    lines.append(
        f"{'retention ratio':<22}"
        + "".join(f"{r['retention_spark_seconds'] / r['retention_duckdb_seconds']:>12.1f}x" for r in results)
    )
    lines.append(
        f"{'effect / retention':<22}"
        + "".join(f"{r['effect_seconds'] / r['retention_job_seconds']:>12.2f}x" for r in results)
    )
    for name, key in (
        ("peak memory, GiB", "peak_rss_gib"),
        ("peak disk, GiB", "peak_disk_gib"),
        ("output on disk, GiB", "output_gib"),
    ):
        lines.append(f"{name:<22}" + "".join(f"{r[key]:>13.2f}" for r in results))
    lines.append(
        f"{'NDCG@10 ALS / pop.':<22}"
        + "".join(f"{r['ndcg_at_10']:>7.3f}/{r['baseline_ndcg_at_10']:.3f}" for r in results)
    )
    lines.append("growth vs linear: (seconds / first size's seconds) / (events / first size's events); 1.00 is linear")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.scale")
    p.add_argument("--events", default="1000000,5000000,20000000", help="comma-separated sizes, smallest first")
    p.add_argument("--driver-memory", default="12g")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides for every size"
    )
    args = p.parse_args()
    sizes = sorted(int(e) for e in args.events.split(","))
    results = [run_size(n, args.driver_memory, args.set) for n in sizes]
    text = report(results, args.set)
    print("\n" + text)
    out = RESULTS / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": machine(), "overrides": args.set, "results": results}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
