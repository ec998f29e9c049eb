"""The tests' shared helpers: tiny configs (in-process and as `--set` arguments), the `recsys-spark`
subprocess, a scrubbed environment, free ports, waiting for a server, and MLflow state restored."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from recsys_spark.config import Config, SearchSpace

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# What a user's shell would not have: mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI, and a
# Hadoop client's variables would send `yarn` checks elsewhere.
SCRUBBED = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_ID",
    "MLFLOW_LOGGING_LEVEL",  # cli.main sets these two in-process (quiet console): a user's shell has neither
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR",
    "HADOOP_CONF_DIR",
    "YARN_CONF_DIR",
    "PYSPARK_PYTHON",
)


# The JVMs of the suite (the in-process session, every `recsys-spark` and `spark-submit` process, the
# standalone daemons) run seconds on kilobytes of data, where C2's compilations and a parallel
# collector's threads cost more CPU than they save: on 2 cores a tiny pipeline's CPU time halves
# (136 -> 68 s with TINY_SPARK below; 2026-12-06). conftest.py exports it; JIT tier and collector
# change no result. The Online Retail run (541,909 rows) is slower with it and drops it. C1 alone
# gets a 48 MB code cache, which the suite's tracked run filled ("CodeCache is full. Compiler has
# been disabled" at 40 s, after which everything runs interpreted): 240 MB as with C2 (2026-12-07).
TEST_JVM = {"JAVA_TOOL_OPTIONS": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:ReservedCodeCacheSize=240m"}
# Spark settings of every tiny-data test run: no UI, and no adaptive query execution, whose extra
# planning per query doubled a tiny evaluation's time (15-17 s -> 7-9 s) and changes no result.
TINY_SPARK = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.adaptive.enabled": "false",
}


def small_config(root: str) -> Config:
    """Config sized for tests: local[2], 2 shuffle partitions, TINY_SPARK, outputs under `root`."""
    cfg = Config()
    cfg.spark.master = "local[2]"
    cfg.spark.shuffle_partitions = 2
    cfg.spark.driver_memory = "4g"  # the whole suite shares it (2g ran out near the end once the suite grew)
    cfg.spark.log_level = "ERROR"
    cfg.spark.conf = {**TINY_SPARK, "spark.default.parallelism": "2"}
    cfg.output.root = root
    g = cfg.generate
    g.events, g.users, g.items, g.clusters, g.days, g.users_per_chunk = 6000, 400, 120, 4, 56, 200
    return cfg


def tiny_training(cfg: Config) -> Config:
    """A three-trial tuning budget over a tiny space, 7-day slices, top 5."""
    cfg.als.max_iter = 5
    cfg.tune.trials = 3
    cfg.tune.space = SearchSpace(
        rank=[4, 8], reg_param=[0.05], alpha=[1.0, 10.0], max_iter=[5], confidence=["linear", "log"]
    )
    cfg.split.test_days, cfg.tune.validation_days = 7, 7
    cfg.recommend.n = 5
    cfg.model.family = "als"  # the tests of ALS's lists read it; pipeline_run runs the default, auto
    return cfg


def copied_root(cfg: Config, dst: Path) -> Config:
    """`cfg` on a copy of its output root at `dst` (symlinks kept): a test that writes tables works on
    its own state, not on a shared set-up other tests read."""
    shutil.copytree(cfg.output.root, dst, symlinks=True)
    return dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, root=str(dst)))


def failure(out: subprocess.CompletedProcess) -> str:
    """Why a process failed, for an assertion message: its exit code, the first error lines of both
    streams (a stack trace's tail hides the cause, e.g. a JVM error that stopped Spark; under
    spark-submit a driver script's traceback is on stdout), the JVM's warnings, and both tails."""
    both = out.stdout.splitlines() + out.stderr.splitlines()
    errors = [line for line in both if re.search(r"\bERROR\b|Error:|Exception:|Traceback", line)]
    warnings = [line for line in out.stdout.splitlines() if re.search(r"\[warning\]|\[error\]|VM warning", line)]
    return "\n".join(
        [f"exit {out.returncode}", "first errors:", *errors[:15], "JVM warnings:", *warnings[:10], "stdout tail:"]
        + [out.stdout[-1500:], "stderr tail:", out.stderr[-1500:]]
    )


def spark_sets(conf: Mapping[str, str]) -> dict[str, str]:
    """`spark.conf` entries as `--set` keys."""
    return {f"spark.conf.{key}": value for key, value in conf.items()}


def sets(overrides: Mapping[str, object]) -> list[str]:
    """`--set key=value` arguments for a command line."""
    return [arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]


# The command-line twin of small_config + a two-trial tuning budget: 3,000 events, tracking off.
TINY: dict[str, object] = {
    "spark.master": "local[2]",
    "spark.shuffle_partitions": 2,
    **spark_sets(TINY_SPARK),
    "generate.events": 3000,
    "generate.users": 200,
    "generate.items": 80,
    "generate.days": 42,
    "split.test_days": 7,
    "tune.validation_days": 7,
    "tune.space.rank": "[4]",
    "tune.space.alpha": "[5.0]",
    "tune.trials": 2,
    "tune.space.max_iter": "[3]",
    "als.max_iter": 3,
    "model.family": "als",
    "tracking.enabled": "false",
}


# The suite's one tracked `recsys-spark run` (conftest's pipeline_run): small_config's data and
# tiny_training's budget as a user's `--set` arguments, with two secrets planted to look for.
PIPELINE_RUN: dict[str, object] = {
    "spark.master": "local[2]",
    "spark.shuffle_partitions": 2,
    **spark_sets(TINY_SPARK),
    "generate.events": 6000,
    "generate.users": 400,
    "generate.items": 120,
    "generate.clusters": 4,
    "generate.days": 56,
    "generate.users_per_chunk": 200,
    "als.max_iter": 5,
    "tune.trials": 3,
    "tune.space.rank": "[4, 8]",
    "tune.space.reg_param": "[0.05]",
    "tune.space.alpha": "[1.0, 10.0]",
    "tune.space.max_iter": "[5]",
    "tune.space.confidence": "[linear, log]",
    "split.test_days": 7,
    "tune.validation_days": 7,
    "recommend.n": 5,
    "ease.lambdas": "[10.0, 100.0]",  # model.family auto (the default): EASE and ALS on the same users
    "ease.dropouts": "[0.0, 0.25]",  # and EDLAE's dropout beside plain EASE: four settings
    "spark.conf.spark.hadoop.fs.s3a.secret.key": "hunter2-s3",
    "input.options.password": "hunter2-planted",
}


def tiny(**changes: object) -> list[str]:
    """TINY as `--set` arguments, with `changes` (dots written as `__`: tracking__enabled=True)."""
    return sets({**TINY, **{k.replace("__", "."): v for k, v in changes.items()}})


def scrubbed_env(extra: Mapping[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment a user's shell would give a command, plus `extra`, minus `drop`."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED + drop}
    return {**env, **(extra or {})}


def cli(
    *args: str,
    cwd: Path | str,
    env: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
    timeout: int = 600,
    kill_at: str | None = None,
) -> subprocess.CompletedProcess:
    """`recsys-spark ARGS` as a real process: its exit code, stdout and stderr (`kill_at`: killed
    by SIGKILL when a table commit passes that point, see kill_at.py)."""
    program = [str(REPO / "tests" / "kill_at.py"), kill_at] if kill_at else ["-m", "recsys_spark.cli"]
    return subprocess.run(
        [sys.executable, *program, *args],
        cwd=cwd,
        env=scrubbed_env(env, drop),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# A fresh interpreter in which `import pyspark` fails, as on a host without it.
NO_PYSPARK = """
import sys
class NoPyspark:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "pyspark":
            raise ImportError(f"No module named {name!r} (blocked: a host without Spark)")
sys.meta_path.insert(0, NoPyspark())
"""


def without_pyspark(code: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter that cannot import pyspark."""
    return subprocess.run(
        [sys.executable, "-c", NO_PYSPARK + code], capture_output=True, text=True, timeout=120, **kwargs
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 120, log: Path | None = None) -> None:
    """Wait until `url` answers; fail with the server's log if it exits or the time runs out."""
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            alive = proc is None or proc.poll() is None
            if not alive or time.time() > deadline:
                why = "exited" if not alive else "timed out"
                output = log.read_text()[-3000:] if log is not None and log.exists() else ""
                raise AssertionError(f"{url} did not answer ({why}): {output}") from None
            time.sleep(0.5)


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs process `pid` listens on (TCP over IPv4 and IPv6), read from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed since the listing (a JVM opens and closes files all the time)
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    out = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[3] == "0A" and f[9] in inodes:  # 0A: LISTEN
                host, port = f[1].split(":")
                raw = bytes.fromhex(host)  # 32-bit words, each little-endian
                addr = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
                out.add((str(getattr(addr, "ipv4_mapped", None) or addr), int(port, 16)))
    return out


@contextmanager
def server(cmd: list[str], health: str, cwd: Path | str, env: Mapping[str, str] | None = None) -> Iterator:
    """A real server process on 127.0.0.1, answering `health`, its output in `cwd`/server.log
    (a file: a pipe nobody reads would block a chatty server), stopped on the way out."""
    path = (
        f"{BIN}:{os.environ.get('PATH', '')}"  # mlflow starts uvicorn/gunicorn by name, as after `. .venv/bin/activate`
    )
    log = Path(cwd) / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=scrubbed_env({"PATH": path, **(env or {})}), stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_http(health, proc, log=log)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def mlflow_state() -> Iterator[None]:
    """Restore MLflow's global state afterwards: the tracking URI, the environment variables
    set_tracking_uri and set_experiment export, and active runs."""
    import mlflow  # here, not at the top: test_blas's fitting subprocess imports this module

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    uri, env = mlflow.get_tracking_uri(), {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        while mlflow.active_run():
            mlflow.end_run()
        mlflow.set_tracking_uri(uri)
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def inside(folder: Path | str) -> Iterator[None]:
    """Run in `folder` (MLflow's default artifact root ./mlruns lands there), then come back."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)


def bash_blocks() -> list[str]:
    """The README's ```bash blocks, in order."""
    blocks, current = [], None
    for line in (REPO / "README.md").read_text().splitlines():
        if current is None and line.strip() == "```bash":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def bash(script: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """A README script as a user's shell runs it (bash -euo pipefail)."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=scrubbed_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def clone_repo(dst: Path) -> Path:
    """The working tree (tracked and new files) in a fresh folder, sharing the project's venv."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)  # keeps mtimes: make sees the venv as up to date
    venv = Path(sys.executable).parent.parent
    (dst / ".venv").symlink_to(venv)
    run_stamp, dev_stamp = venv / ".installed-run", venv / ".installed"
    if dev_stamp.exists() and not run_stamp.exists():  # a venv from before the split: the dev install holds it
        run_stamp.touch()
        os.utime(run_stamp, (dev_stamp.stat().st_mtime - 1,) * 2)
    stamps = [s.stat().st_mtime for s in (run_stamp, dev_stamp) if s.exists()]
    if stamps:  # make must not reinstall the shared venv as an editable install of this temporary copy
        os.utime(dst / "pyproject.toml", (min(stamps) - 1,) * 2)
    return dst
