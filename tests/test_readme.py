"""The README's command blocks, run exactly as written where that is safe here, so the README
cannot drift from the code. Every ```bash block must be classified: run here, or skipped with
the reason (a download, a YARN/HDFS cluster). A new block that is neither fails the first test."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def bash_blocks() -> list[str]:
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


# First line of a block -> why it is not run here.
SKIPPED = {
    "make run    #": (
        "run line by line below: `make run` by test_quickstart_make_run; `make test` is the command running this test"
    ),
    "# ml-latest-small": (
        "needs the MovieLens download (the configs are tested on files in the exact formats in test_datasets.py)"
    ),
    ".venv/bin/recsys-spark run --config conf/online_retail.yaml": (
        "20 trials up to rank 128 take minutes: test_real_data.py runs "
        "the same config end to end on the shared file with a small tuning budget"
    ),
    "make dist\n.venv/bin/spark-submit --master yarn": "needs a YARN cluster and HDFS",
    "python -m venv pyspark_venv": "ships a packed virtualenv to a cluster (Spark's guide); needs a cluster",
    ". .venv/bin/activate          # mlflow starts": (
        "needs a registered model: test_serving.py loads the champion and runs "
        "`mlflow models serve` against a real store, posting to /invocations"
    ),
    ".venv/bin/recsys-spark report ": (
        "test_report.py runs both commands through the CLI's main on a tracked pipeline run "
        "(the latest by default, then --run-id and --out)"
    ),
    "export RECSYS_PSEUDONYM_KEY": (
        "the same pipeline pseudonymized runs in test_privacy.py (in the shared session, with a key the "
        "test sets); `lookup` and `forget` run as commands in test_faults.py"
    ),
}
RUN = {
    "make dist\nscripts/standalone-cluster.sh start": "test_standalone_cluster_block",
}


def key(block: str) -> str | None:
    return next((k for k in [*SKIPPED, *RUN] if block.startswith(k)), None)


def test_every_bash_block_is_run_or_skipped_with_a_reason():
    blocks = bash_blocks()
    assert len(blocks) >= 5
    unknown = [b.splitlines()[0] for b in blocks if key(b) is None]
    assert not unknown, f"README bash blocks neither run nor skipped in tests/test_readme.py: {unknown}"


@pytest.fixture
def clone(tmp_path):
    """The working tree (tracked and new files) in a fresh folder, sharing the project's venv."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    dst = tmp_path / "repo"
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)  # keeps mtimes: make sees the venv as up to date
    venv = Path(sys.executable).parent.parent
    (dst / ".venv").symlink_to(venv)
    stamp = venv / ".installed"
    if stamp.exists():  # make must not reinstall the shared venv as an editable install of this temporary copy
        os.utime(dst / "pyproject.toml", (stamp.stat().st_mtime - 1,) * 2)
    return dst


def run(script: str, cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYSPARK_PYTHON")}
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_quickstart_make_run(clone):
    block = next(b for b in bash_blocks() if b.startswith("make run"))
    line = block.splitlines()[0].split("#")[0].strip()
    assert line == "make run"
    out = run(line, clone)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "== recsys-spark summary ==" in out.stdout and "rows from als" in out.stdout
    assert "DAU/MAU, mean over the last 30 days" in out.stdout
    assert not (clone / "output" / "checkpoints").exists()  # cleaned after a successful run
    assert not list((clone / "output").rglob("_staging")) and not (clone / "output" / "_recsys.lock").exists()


@pytest.mark.slow
def test_standalone_cluster_block(clone):
    block = next(b for b in bash_blocks() if key(b) == "make dist\nscripts/standalone-cluster.sh start")
    for leftover in ("/tmp/recsys-out", "/tmp/recsys-ckpt"):
        shutil.rmtree(leftover, ignore_errors=True)
    stop = next(line for line in block.splitlines() if "standalone-cluster.sh stop" in line).split("#")[0]
    try:
        out = run(block, clone)
    finally:
        run(stop, clone, timeout=120)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert "== recsys-spark summary ==" in out.stdout and "rows from als" in out.stdout
