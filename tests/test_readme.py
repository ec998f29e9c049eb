"""The README's command blocks, run exactly as written where that is safe here, so the README
cannot drift from the code. Every ```bash block must be classified: run here, or skipped with
the reason (a download, a YARN/HDFS cluster). A new block that is neither fails the first test."""

import re

import pytest

from support import REPO, bash, bash_blocks, clone_repo, failure

# First line of a block -> why it is not run here.
SKIPPED = {
    "make run    #": (
        "run line by line below: `make run` by test_quickstart_make_run; `make test` is the command running this test"
    ),
    "# ml-latest-small": (
        "needs the MovieLens download (the configs are tested on files in the exact formats in test_datasets.py)"
    ),
    ".venv/bin/python -m pip download recbole": (
        "downloads a wheel from PyPI (the suite does not use the network beyond installing the repo)"
    ),
    ".venv/bin/recsys-spark run --config conf/movielens-100k.yaml": (
        "needs MovieLens 100K (the block above fetches it; the config is tested on a file in the "
        "u.data format in test_datasets.py)"
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
    "curl -s http://127.0.0.1:5001/invocations": (
        "needs a served model: test_serving.py posts the same request (a history) to `mlflow models serve`"
    ),
    ".venv/bin/recsys-spark report ": (
        "test_report.py runs both commands through the CLI's main on a tracked pipeline run "
        "(the latest by default, then --run-id and --out)"
    ),
    ".venv/bin/recsys-spark recommend --config conf/local.yaml": (
        "needs a shop's item and dismissal tables: test_filters.py runs the same settings through the "
        "recommend job on the generated catalogue"
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
    return clone_repo(tmp_path / "repo")


def summary_shape(text: str) -> list[str]:
    """A summary's top-level lines up to their first colon, numbers and dates as #."""
    lines = [line for line in text.splitlines() if line and line[0] != " " and not line.startswith("make[")]
    return [re.sub(r"[\d.,/-]+", "#", line.split(":")[0]) for line in lines]  # make[1]: under `make test`


@pytest.mark.slow
def test_quickstart_make_run(clone):
    block = next(b for b in bash_blocks() if b.startswith("make run"))
    line = block.splitlines()[0].split("#")[0].strip()
    assert line == "make run"
    # The README's command at the smallest size that still proves it works (the venv, the Java check,
    # the whole pipeline, the summary): 20,000 events instead of 300,000, two tuning trials.
    small = "--set generate.events=20000 --set generate.users=1000 --set generate.items=300 --set tune.trials=2"
    out = bash(f"{line} ARGS='{small}'", clone)
    assert out.returncode == 0, failure(out)
    assert "== recsys-spark summary ==" in out.stdout and re.search(r"rows from (als|ease)", out.stdout)
    assert "DAU/MAU, mean over the last 30 days" in out.stdout
    # A quiet console (issue 34): none of MLflow's INFO lines, artifact download bars, pickling or
    # input-example notices or registry prints (Spark's own warnings under load are not this test's).
    noise = ("INFO mlflow", "Downloading artifacts", "CloudPickle", "input example", "Successfully registered")
    assert [n for n in noise if n in out.stderr] == [], out.stderr[-3000:]
    assert not re.search(r"Created version '\d+' of model", out.stderr)
    # The README's sample summary has the real summary's lines, in order (numbers and dates aside).
    readme = (REPO / "README.md").read_text()
    sample = readme[readme.index("== recsys-spark summary ==") :].split("```")[0]
    assert summary_shape(sample) == summary_shape(out.stdout[out.stdout.index("== recsys-spark summary ==") :])
    assert not (clone / "output" / "checkpoints").exists()  # cleaned after a successful run
    assert not list((clone / "output").rglob("_staging")) and not (clone / "output" / "_recsys.lock").exists()


def test_standalone_cluster_block(standalone):
    # Run as written by the session's `standalone` fixture: make dist, start, the job; stop at the end.
    out = standalone.job
    assert out.returncode == 0, failure(out)
    assert "== recsys-spark summary ==" in out.stdout and re.search(r"rows from (als|ease)", out.stdout)
    assert "tuning: 2 trials" in out.stdout  # tune.trials=2, on the cluster
