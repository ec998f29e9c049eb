"""`python -m bench.serving --events 20000000`: size, load time and answer time of the served model.

Generates (once, under bench/results/data-<N>), ingests and trains at N events with the built-in
defaults and tuning off (rank 32, 10 iterations), each command in its own JVM, tracked in a store
of its own under bench/results/serving-<N>. Then, in fresh Python processes with no Spark: the
registered pyfunc's size on disk, `mlflow.pyfunc.load_model` seconds (3 processes), and predict
time for 10,000 users in one frame (the batch path) beside the per-user path predict used before
(2,000 of them, same process), and for one user at a time (p50, p99 of 200). `--reuse` logs the model an earlier
run of this size saved as a new version, with the code as it is now, and measures that (no training).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .common import RESULTS, data_overrides, machine

PROBE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
t1 = time.perf_counter()
model = mlflow.pyfunc.load_model(sys.argv[2])
t2 = time.perf_counter()
users = json.loads(sys.argv[3])
t3 = time.perf_counter(); batch = model.predict(pd.DataFrame({"user_id": users})); t4 = time.perf_counter()
inner = model.unwrap_python_model()  # the per-user path predict took before batching, as the baseline
t5 = time.perf_counter(); looped = [inner.recommend(u, inner.n) for u in users[:2000]]; t6 = time.perf_counter()
singles = []
for u in users[:200]:
    s = time.perf_counter(); model.predict(pd.DataFrame({"user_id": [u]})); singles.append(time.perf_counter() - s)
singles.sort()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "batch_users": len(users), "batch_rows": len(batch),
                  "batch_ms_per_user": 1000 * (t4 - t3) / len(users),
                  "per_user_loop_ms_per_user": 1000 * (t6 - t5) / 2000,
                  "single_ms_p50": 1000 * singles[len(singles) // 2],
                  "single_ms_p99": 1000 * singles[int(len(singles) * 0.99)],
                  "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}))
"""


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000_000)
    p.add_argument("--driver-memory", default="12g")
    p.add_argument(
        "--reuse", action="store_true", help="measure the model an earlier run of this size registered (no training)"
    )
    args = p.parse_args()
    n = args.events
    work = RESULTS / f"serving-{n}"
    if not args.reuse:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    store = f"sqlite:///{work / 'mlflow.db'}"
    sets = [
        *data_overrides(n),
        "spark.master=local[2]",
        f"spark.driver_memory={args.driver_memory}",
        f"spark.shuffle_partitions={max(8, n // 1_250_000)}",
        "spark.conf.spark.ui.showConsoleProgress=false",
        "tune.enabled=false",
        "model.family=als",  # the model the issue measured; EASE's n x n B is another cost
        f"tracking.uri={store}",
    ]
    seconds = {}
    for command in ("generate", "ingest", "train"):
        if args.reuse or (command == "generate" and (RESULTS / f"data-{n}" / "raw").exists()):
            continue  # generated once per size (bench.common.data_overrides)
        cmd = [sys.executable, "-m", "recsys_spark.cli", command, *[a for s in sets for a in ("--set", s)]]
        print(f"== {' '.join(cmd[2:])}", flush=True)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=work)
        seconds[command] = round(time.perf_counter() - t0, 1)
    import mlflow

    mlflow.set_tracking_uri(store)
    saved = RESULTS / f"data-{n}" / "model"
    if args.reuse:  # the registered copy carries the code it was logged with: log the saved model again with today's
        from recsys_spark.mlops import registry

        with mlflow.start_run(run_name="bench.serving"):
            registry.log_pyfunc(str(saved.resolve()), "recsys-spark")
    version = max(mlflow.MlflowClient().search_model_versions("name='recsys-spark'"), key=lambda v: int(v.version))
    uri = f"models:/recsys-spark/{version.version}"
    local = Path(
        mlflow.artifacts.download_artifacts(
            f"runs:/{version.run_id}/recommender", dst_path=str(work / f"downloaded-v{version.version}")
        )
    )
    users = json.dumps([f"u{i:07d}" for i in range(1, 10_001)])  # the generator's ids
    probes = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", PROBE, store, uri, users], check=True, capture_output=True, text=True, cwd=work
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(3)
    ]
    out = {
        "machine": machine(),
        "events": n,
        "seconds": seconds,
        "model_uri": uri,
        "saved_model_mib": round(du(saved.resolve()) / 2**20, 1),
        "pyfunc_mib": round(du(local) / 2**20, 1),
        "parts_mib": {
            d.name: round(du(d) / 2**20, 1)
            for a in (local / "artifacts").iterdir()
            for d in sorted(a.iterdir())
            if d.is_dir()
        },
        "probes": probes,
    }
    print(json.dumps(out, indent=2))
    (RESULTS / f"serving-{n}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
