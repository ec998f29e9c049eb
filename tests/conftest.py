"""The suite's shared set-up: one local[2] SparkSession, one tiny trained output, and one tracked
`recsys-spark run` (a real process) that the CLI, report, browser, MLflow UI, serving, registry,
secret and time-zone tests all read instead of running a pipeline each."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from recsys_spark.config import Config, load_config
from recsys_spark.infra.session import build_session

from support import (
    PIPELINE_RUN,
    TEST_JVM,
    bash,
    bash_blocks,
    cli,
    clone_repo,
    failure,
    mlflow_state,
    sets,
    small_config,
    tiny_training,
)

# Set-up that costs a pipeline's worth of Spark work or more: a test that needs one is `slow` (make
# test-fast leaves it out).
SHARED = ("pipeline_run", "runs", "trained", "standalone")
# make test runs two xdist workers; the files whose tests read one session-wide set-up go to one
# worker together, so it is paid once (and the README's cluster, on fixed paths, starts once). A
# test that reads one of these set-ups from a file not listed here fails at collection.
SAME_WORKER = {
    "pipeline_run": ("test_cli.py", "test_report.py", "test_serving.py", "test_safety.py"),
    "standalone": ("test_cluster.py", "test_readme.py"),
}
# Collected and created timestamps are naive local times in PySpark: make local time UTC.
os.environ["TZ"] = "UTC"
time.tzset()
for name, value in TEST_JVM.items():  # every JVM the suite starts inherits it (see support.TEST_JVM)
    os.environ.setdefault(name, value)


# The costliest files first (their shared set-ups, then the longest on their own), so that under xdist
# the two largest units start at once on the two workers and the small ones fill in at the end.
FIRST = (
    *SAME_WORKER["pipeline_run"],
    *SAME_WORKER["standalone"],
    "test_faults.py",
    "test_real_data.py",
    "test_privacy.py",
    "test_datasets.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: FIRST.index(item.path.name) if item.path.name in FIRST else len(FIRST))
    for item in items:
        shared = next((name for name in SHARED if name in item.fixturenames), None)
        if shared:
            item.add_marker(pytest.mark.slow)
        for name, files in SAME_WORKER.items():
            if name in item.fixturenames and item.path.name not in files:
                raise pytest.UsageError(
                    f"{item.nodeid} reads {name}: add {item.path.name} to SAME_WORKER in conftest.py"
                )


@pytest.hookimpl(optionalhook=True)  # an xdist hook: pytest without xdist never calls it
def pytest_xdist_make_scheduler(config, log):
    """For `-n N` (xdist's default `--dist load`): its scope scheduling with SAME_WORKER's files as
    one scope each (xdist's own loadgroup marks do not reach its scheduler under pytest 9); any
    other `--dist` is xdist's own."""
    if config.getoption("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    config.option.loadscopereorder = False  # keep FIRST's order, not the order of test counts

    scope = {file: name for name, files in SAME_WORKER.items() for file in files}

    class SharedSetUps(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return scope.get(path.rsplit("/", 1)[-1], path)

    return SharedSetUps(config, log)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    cfg = small_config(str(tmp_path_factory.mktemp("spark")))
    session = build_session(cfg)
    yield session
    session.stop()


@pytest.fixture(scope="session")
def trained(spark, tmp_path_factory):
    """generate -> ingest -> train once on tiny data; shared by the job tests."""
    cfg = tiny_training(small_config(str(tmp_path_factory.mktemp("train"))))
    from recsys_spark.jobs.runner import JOBS

    JOBS["generate"](spark, cfg)
    JOBS["ingest"](spark, cfg)
    return cfg, JOBS["train"](spark, cfg)


@pytest.fixture(autouse=True)
def mlflow_restored():
    """No test leaves MLflow pointed at its store for the tests after it on the same worker."""
    with mlflow_state():
        yield


@pytest.fixture
def cfg(tmp_path) -> Config:
    return small_config(str(tmp_path / "out"))


@dataclass(frozen=True)
class PipelineRun:
    """One `recsys-spark run` as a user starts it in `base`: tracking on, MLflow's default store
    (`base/mlflow.db`, artifacts in `base/mlruns`), two planted secrets, the summary as JSON."""

    base: Path
    stdout: str
    stderr: str
    summary: dict
    cfg: Config  # the same settings in-process, with the store's absolute URI

    @property
    def stages(self) -> dict:
        return self.summary["stages"]


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory) -> PipelineRun:
    base = tmp_path_factory.mktemp("pipeline")
    args = sets({**PIPELINE_RUN, "output.root": base / "out"})
    out = cli("run", "--summary-json", "summary.json", *args, cwd=base, env={"TZ": "UTC"}, timeout=900)
    assert out.returncode == 0, failure(out)
    cfg = load_config(None, [*args[1::2], f"tracking.uri=sqlite:///{base}/mlflow.db"])
    summary = json.loads((base / "summary.json").read_text())
    return PipelineRun(base, out.stdout, out.stderr, summary, cfg)


CLUSTER_BLOCK = "make dist\nscripts/standalone-cluster.sh start"  # the README's standalone-cluster block


@dataclass(frozen=True)
class Standalone:
    """The README's standalone cluster, up for the session, and the block's job as it ran on it."""

    clone: Path  # the working tree the block ran in (its dist/, and mlflow.db: MLflow's default store)
    master: str
    submit: str  # the block's spark-submit command, as written
    job: subprocess.CompletedProcess

    @property
    def pyfiles(self) -> str:
        return str(self.clone / "dist" / "recsys_spark.zip")


@pytest.fixture(scope="session")
def standalone(tmp_path_factory) -> Standalone:
    """The README's cluster block run as written in a clone of the working tree: `make dist`, the
    script's start line, the pipeline on the cluster; the stop line runs at the end of the session,
    so test_cluster submits its own jobs to the same master and workers."""
    block = next((b for b in bash_blocks() if b.startswith(CLUSTER_BLOCK)), None)
    assert block, f"the README has no bash block starting {CLUSTER_BLOCK!r}"
    lines = block.splitlines()
    start = next((i for i, line in enumerate(lines) if "standalone-cluster.sh start" in line), None)
    stop = next((i for i, line in enumerate(lines) if "standalone-cluster.sh stop" in line), None)
    assert start is not None and stop is not None, f"the README's cluster block has no start or stop line: {block}"
    folder = Path(lines[start].split()[2])  # scripts/standalone-cluster.sh start DIR WORKERS
    clone = clone_repo(tmp_path_factory.mktemp("readme-cluster") / "repo")
    for leftover in ("/tmp/recsys-out", "/tmp/recsys-ckpt"):
        shutil.rmtree(leftover, ignore_errors=True)
    bash(lines[stop].split("#")[0], clone, timeout=120)  # daemons a killed session left on the same folder
    try:
        up = bash("\n".join(lines[: start + 1]), clone, timeout=300)
        assert up.returncode == 0, failure(up)
        submit = "\n".join(lines[start + 1 : stop])
        yield Standalone(clone, (folder / "master-url").read_text().strip(), submit, bash(submit, clone))
    finally:
        bash(lines[stop].split("#")[0], clone, timeout=120)
