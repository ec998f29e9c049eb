"""Kill an executor while ALS fits on a real standalone cluster; the job must still finish right.

    python -m bench.fault_injection [--events 300000]

Starts 1 master + 2 workers on 127.0.0.1, submits the pipeline, and when the train stage starts
fitting, kills worker 1's executor (found as the child process of the pid the worker's pid file
reports). The same pipeline then runs undisturbed in local mode, and the outputs are compared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "standalone-cluster.sh"


def executor_pid(worker_pid: int) -> int | None:
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    for line in out.splitlines()[1:]:
        pid, ppid, args = line.split(None, 2)
        if int(ppid) == worker_pid and "CoarseGrainedExecutorBackend" in args:
            return int(pid)
    return None


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.fault_injection")
    p.add_argument("--events", type=int, default=300_000)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="recsys-fault-"))
    env = {**os.environ, "PYTHON": sys.executable, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    master = subprocess.run(
        ["bash", str(SCRIPT), "start", str(work / "cluster"), "2"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    zipfile = shutil.make_archive(str(work / "recsys_spark"), "zip", str(REPO), "recsys_spark")
    users = max(200, args.events // 20)
    sets = [
        f"generate.events={args.events}",
        f"generate.users={users}",
        f"generate.items={max(100, users // 5)}",
        "tune.enabled=false",
        "als.rank=32",
        "als.max_iter=10",
        "als.checkpoint_interval=2",
        "als.num_user_blocks=2",
        "als.num_item_blocks=2",
        "spark.shuffle_partitions=4",
        "input.path=null",
        "spark.conf.spark.executor.memory=1500m",
        "spark.conf.spark.executor.cores=1",
        "spark.conf.spark.ui.showConsoleProgress=false",
    ]

    def cmd(m: str, root: Path) -> list[str]:
        s = sets + [
            f"output.root=file://{root}/out",
            f"spark.checkpoint_dir=file://{root}/ckpt",
            f"tracking.uri=sqlite:///{root}/mlflow.db",
        ]
        return [
            str(Path(sys.executable).parent / "spark-submit"),
            "--master",
            m,
            "--py-files",
            zipfile,
            "--total-executor-cores",
            "2",
            str(REPO / "jobs" / "pipeline.py"),
            "--config",
            str(REPO / "conf" / "cluster.yaml"),
            *[x for o in s for x in ("--set", o)],
        ]

    try:
        root = work / "cluster-run"
        root.mkdir()
        t0 = time.time()
        proc = subprocess.Popen(
            cmd(master, root), cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        log: list[str] = []
        killed: dict = {}

        def killer() -> None:
            while proc.poll() is None and not any("[train]" in line and "interactions" in line for line in log):
                time.sleep(0.2)
            time.sleep(4)  # into the ALS iterations
            worker = int(
                (work / "cluster" / "pids" / "spark-recsys-org.apache.spark.deploy.worker.Worker-1.pid").read_text()
            )
            pid = executor_pid(worker)
            if pid and proc.poll() is None:
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, worker=worker, at=round(time.time() - t0, 1))
                print(f"killed executor pid {pid} (child of worker 1, pid {worker}) at {killed['at']} s", flush=True)

        threading.Thread(target=killer, daemon=True).start()
        for line in proc.stdout:
            log.append(line)
        rc = proc.wait()
        total = round(time.time() - t0, 1)
        lost = [
            line.strip()
            for line in log
            if "Lost executor" in line or "ExecutorLostFailure" in line or "Executor lost" in line.lower()
        ]
        print(f"cluster run exit code {rc} after {total} s; executor-loss lines in the driver log: {len(lost)}")
        for line in lost[:3]:
            print("  " + line[:200])
        summary = [line.rstrip() for line in log if line.startswith(("rows read", "  ndcg_at_10", "seconds:"))]
        print("\n".join(summary))
        local = work / "local-run"
        local.mkdir()
        subprocess.run(cmd("local[2]", local), cwd=local, env=env, capture_output=True, check=True)
        compare = subprocess.run(
            [sys.executable, "-c", COMPARE, str(root), str(local)], capture_output=True, text=True, env=env
        )
        print(compare.stdout.strip() or compare.stderr[-2000:])
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(work / "cluster")], env=env)


COMPARE = """
import sys
from pyspark.sql import SparkSession, functions as F
s = SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false").getOrCreate()
s.sparkContext.setLogLevel("ERROR")
a, b = sys.argv[1], sys.argv[2]
for t in ("events", "retention/cohorts"):
    x, y = s.read.parquet(f"{a}/out/{t}"), s.read.parquet(f"{b}/out/{t}")
    print(\
f"{t}: {x.count()} rows; identical to local mode: {x.exceptAll(y).count() == 0 and y.exceptAll(x).count() == 0}")
r = lambda p: s.read.parquet(f"{p}/out/recommendations").select("user_id", "rank", "item_id")
x, y = r(a), r(b)
same = x.join(y, ["user_id", "rank", "item_id"]).count()
print(\
f"recommendations: {x.count()} rows; same (user, rank, item) as local mode: {same} ({same / max(1, y.count()):.2%})")
"""


if __name__ == "__main__":
    main()
