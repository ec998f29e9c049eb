"""`python -m bench.capacity [scale.json] [--cluster cluster.json]`: each stage's time at 100M and 1B
events on N executors, projected on paper from a `bench.scale` run's measured sizes.

The model, per stage: seconds = fixed + per_event x events, fitted through the two largest measured
sizes (where the generated catalogue is capped at 50k items, so top-N grows with users as the
events do); on `cores` cores the per-event part runs `cores / 2` times faster than on the 2 cores it
was measured on, scaled by the parallel efficiency a `bench.cluster` run measured (speed-up from
1 to 2 workers, over 2), and the fixed part (job scheduling, the driver's own work) does not
shrink. Nothing here runs Spark: it reads JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import RESULTS

SIZES = (100_000_000, 1_000_000_000)
CLUSTERS = ((10, 4), (50, 4))  # (executors, cores each)


def latest(prefix: str) -> Path | None:
    found = sorted(RESULTS.glob(f"{prefix}-????????-??????.json"))  # not scale's per-size files
    return found[-1] if found else None


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Fixed seconds and seconds per event through the two largest (events, seconds) points."""
    if len({n for n, _ in points}) < 2:
        raise SystemExit(
            "error: the projection needs a bench.scale run of two sizes or more, e.g. --events 5000000,20000000"
        )
    (n1, t1), (n2, t2) = sorted(points)[-2:]
    per_event = max(0.0, (t2 - t1) / (n2 - n1))
    return max(0.0, t2 - per_event * n2), per_event


def efficiency(cluster: dict | None) -> float:
    """Parallel efficiency of the per-event work from 1 to 2 workers (1.0 when not measured)."""
    if not cluster:
        return 1.0
    walls = {r["workers"]: r["wall_seconds"] for r in cluster["results"]}
    return min(1.0, walls[1] / walls[2] / 2) if 1 in walls and 2 in walls else 1.0


def project(scale: dict, eff: float) -> list[str]:
    results = sorted(scale["results"], key=lambda r: r["events"])
    stages = [k for k in results[-1]["seconds"] if k in ("ingest", "train", "recommend", "retention")]
    head = f"{'stage':<12}{'fixed s':>9}{'s / 1M ev':>11}"
    cols = [(n, e, c) for n in SIZES for e, c in CLUSTERS]
    head += "".join(f"{f'{n // 10**6}M, {e}x{c}':>15}" for n, e, c in cols)
    lines = [head]
    total = [0.0] * len(cols)
    for stage in stages:
        fixed, per_event = fit([(r["events"], r["seconds"][stage]) for r in results if stage in r["seconds"]])
        cells = []
        for i, (n, e, c) in enumerate(cols):
            secs = fixed + per_event * n * 2 / (e * c * eff)
            total[i] += secs
            cells.append(f"{secs / 60:>14.1f}m")
        lines.append(f"{stage:<12}{fixed:>9.1f}{per_event * 1e6:>11.1f}" + "".join(cells))
    lines.append(f"{'all four':<32}" + "".join(f"{t / 60:>14.1f}m" for t in total))
    return lines


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.capacity")
    p.add_argument("scale", nargs="?", type=Path, help="a bench.scale JSON (default: the newest)")
    p.add_argument("--cluster", type=Path, help="a bench.cluster JSON (default: the newest, if any)")
    args = p.parse_args()
    scale_file = args.scale or latest("scale")
    if scale_file is None:
        raise SystemExit("error: no bench/results/scale-*.json; run python -m bench.scale first")
    cluster_file = args.cluster or latest("cluster")
    scale = json.loads(scale_file.read_text())
    cluster = json.loads(cluster_file.read_text()) if cluster_file else None
    eff = efficiency(cluster)
    sizes = ", ".join(f"{r['events']:,}" for r in scale["results"])
    print(f"measured: {scale_file.name} ({scale['machine']}; sizes {sizes})")
    print(f"parallel efficiency 1 -> 2 workers: {eff:.2f} ({cluster_file.name if cluster_file else 'not measured'})")
    print("\n".join(project(scale, eff)))
    print("minutes per stage at each size on executors x cores; generate is not part of a production run")


if __name__ == "__main__":
    main()
