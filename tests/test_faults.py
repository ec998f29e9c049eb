"""kill -9 at chosen moments of a table switch (a hook tests/kill_at.py installs in the table layer):
every table stays readable with whole rows of one version, ingest's events and quarantine end up
changed together, and a plain rerun gives exactly the undisturbed output."""

import shutil
import signal
from pathlib import Path

import pytest
from chispa import assert_df_equality

from support import TINY_SPARK, failure, sets, spark_sets
from support import cli as run_cli

pytestmark = pytest.mark.slow
# Every command here: no tuning, a small ALS model, tracking off (one test turns it on).
SETTINGS = sets(
    {
        "spark.master": "local[2]",
        "spark.shuffle_partitions": 2,
        **spark_sets(TINY_SPARK),
        "split.test_days": 7,
        "tune.enabled": "false",
        "model.family": "als",
        "als.max_iter": 3,
        "als.rank": 4,
        "tracking.enabled": "false",
    }
)
# The second ingest differs from the first: it quarantines one user's events by a rule.
DROP_U1 = ["--set", "ingest.rules=[{reason: dropped, when: \"user_id = 'u0000001'\"}]"]


def cli(root, *args, kill_at=None, timeout=600):
    command, *rest = args
    return run_cli(
        command, "--set", f"output.root={root}", *SETTINGS, *rest, cwd=root.parent, kill_at=kill_at, timeout=timeout
    )


@pytest.fixture(scope="module")
def before(tmp_path_factory):
    """A root after one whole pipeline run (tuning off): the previous version of every table. Its own
    run, not the suite's shared one, so this module can run on the other xdist worker."""
    root = tmp_path_factory.mktemp("faults") / "out"
    out = cli(
        root, "run", *sets({"generate.events": 3000, "generate.users": 200, "generate.items": 80, "generate.days": 42})
    )
    assert out.returncode == 0, failure(out)
    return root


def copy(root, dst):
    shutil.copytree(root, dst, symlinks=True)  # the links stay links: the copy is the same state
    return dst


def rows(spark, root, table):
    """The table's rows, with `_source` (the raw file read) below the output root: copies differ above it."""
    from pyspark.sql import functions as F

    df = spark.read.parquet(str(root / table))
    return df.withColumn("_source", F.regexp_extract("_source", "(/raw/.*)$", 1)) if "_source" in df.columns else df


def same(spark, a, b, table):
    assert_df_equality(rows(spark, a, table), rows(spark, b, table), ignore_row_order=True)


@pytest.fixture(scope="module")
def undisturbed(before):
    root = copy(before, before.parent / "undisturbed")
    out = cli(root, "ingest", *DROP_U1)
    assert out.returncode == 0, failure(out)
    return root


def test_ingest_killed_before_any_switch_leaves_the_previous_tables(spark, before, undisturbed):
    root = copy(before, before.parent / "kill-journal")
    out = cli(root, "ingest", *DROP_U1, kill_at="journal")  # both tables staged, the journal written, nothing switched
    assert out.returncode == -signal.SIGKILL
    for table in ("events", "quarantine"):
        same(spark, root, before, table)
    rerun = cli(root, "ingest", *DROP_U1)
    assert rerun.returncode == 0, failure(rerun)
    for table in ("events", "quarantine"):
        same(spark, root, undisturbed, table)
    assert not list(root.rglob("_commit-*")) and not list(root.rglob("_staging"))


def test_ingest_killed_between_its_two_switches_is_completed_by_the_next_run(spark, before, undisturbed):
    root = copy(before, before.parent / "kill-between")
    tracked = ["--set", "tracking.enabled=true", "--set", f"tracking.uri=sqlite:///{before.parent}/between.db"]
    out = cli(root, "ingest", *DROP_U1, *tracked, kill_at="switched_one")
    assert out.returncode == -signal.SIGKILL
    # Each table is whole: events already the new version, quarantine still the previous one.
    same(spark, root, undisturbed, "events")
    same(spark, root, before, "quarantine")
    assert len(list(root.rglob("_commit-*.json"))) == 1
    # The next command on the root completes the journal first: both tables are the new version.
    nxt = cli(root, "retention", *tracked)
    assert nxt.returncode == 0, failure(nxt)
    assert "[recover] completed the interrupted switch of" in nxt.stderr
    # The killed ingest's MLflow run could not end itself: the next run marked it KILLED.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{before.parent}/between.db")
    runs = mlflow.search_runs(experiment_names=["recsys-spark"]).set_index("tags.job")
    assert runs.loc["ingest", "status"] == "KILLED" and runs.loc["retention", "status"] == "FINISHED"
    assert (
        f"[recover] MLflow run {runs.loc['ingest', 'run_id']} was left RUNNING by a killed process: marked KILLED"
        in nxt.stderr
    )
    for table in ("events", "quarantine"):
        same(spark, root, undisturbed, table)


def test_train_and_recommend_killed_before_their_switch_keep_the_previous_model_and_lists(spark, before):
    root = copy(before, before.parent / "kill-train")
    out = cli(root, "train", "--set", "als.rank=6", kill_at="staged")
    assert out.returncode == -signal.SIGKILL
    same(spark, root, before, "model/items")
    recs = cli(root, "recommend", kill_at="staged")
    assert recs.returncode == -signal.SIGKILL
    assert_df_equality(
        rows(spark, root, "recommendations"), rows(spark, before, "recommendations"), ignore_row_order=True
    )
    again = cli(root, "recommend")  # the previous model still serves; leftovers of both kills are gone
    assert again.returncode == 0, failure(again)
    assert "rows from als" in again.stdout
    assert not (root / "checkpoints").exists()  # the killed runs' checkpoint folders went with their leftovers

    def versions(r):
        return sorted(v.name for v in (r / ".versions" / "model").iterdir())

    assert versions(root) == versions(before)  # what the killed train staged was dropped by the next run


def test_forget_killed_between_its_switches_leaves_whole_tables_and_is_completed(spark, before):
    from pyspark.sql import functions as F

    root = copy(before, before.parent / "kill-forget")
    user = F.col("user_id") == "u0000001"
    held = {t: rows(spark, before, t).where(user).count() for t in ("events", "recommendations")}
    assert all(held.values())
    out = cli(root, "forget", "--users", "u0000001", kill_at="switched_one")
    assert out.returncode == -signal.SIGKILL
    # The erasure list switched first; every table after it is still whole and as before.
    assert rows(spark, root, "privacy/erased").count() == 1
    for table in held:
        same(spark, root, before, table)
    nxt = cli(root, "retention")  # the next command completes the journal: every table is the new version
    assert nxt.returncode == 0, failure(nxt)
    for table, n in held.items():
        assert rows(spark, root, table).where(user).count() == 0
        assert rows(spark, root, table).count() == rows(spark, before, table).count() - n
    gone, kept = cli(root, "lookup", "--user", "u0000001"), cli(root, "lookup", "--user", "u0000002")
    assert gone.returncode == kept.returncode == 0, gone.stderr[-2000:] + kept.stderr[-2000:]
    assert "user u0000001: no recommendations" in gone.stdout
    assert "user u0000002: 10 recommendations of" in kept.stdout and kept.stdout.count("because of ") == 10
    # A lookup leaves no session checkpoint folder for the next command to report as a crash's leftover.
    assert not list(root.glob("checkpoints/*")), list(root.glob("checkpoints/*"))


def test_stream_killed_at_any_moment_lands_every_row_once(spark, tmp_path):
    """Files keep landing while `stream --once` is killed: inside a batch's commit (between its
    table switches; after them, before Spark records the batch) and at a random moment; after a
    plain last run the tables are one batch ingest's of the same files, every raw row once."""
    import random
    import subprocess

    from recsys_spark.jobs.runner import JOBS

    from support import small_config

    gen = small_config(str(tmp_path / "gen"))
    JOBS["generate"](spark, gen)
    folder = Path(gen.input_path)
    days = sorted(p.name for p in folder.glob("event_date=*"))
    landing, root = tmp_path / "landing", tmp_path / "out"
    stream = ("stream", "--once", "--set", f"input.path={landing}", "--set", "stream.max_files_per_batch=5")

    def land(chunk):
        for day in chunk:
            shutil.copytree(folder / day, landing / day)

    land(days[:15])
    assert cli(root, *stream, kill_at="switched_one").returncode == -signal.SIGKILL  # batch 0, between switches
    land(days[15:30])
    assert cli(root, *stream, kill_at="committed").returncode == -signal.SIGKILL  # switched in, not recorded by Spark
    land(days[30:50])
    slow = ("--set", "stream.max_files_per_batch=2")  # ten batches: still running when it is killed
    with pytest.raises(subprocess.TimeoutExpired):  # subprocess.run kills it with SIGKILL
        cli(root, *stream, *slow, timeout=random.Random(7).uniform(15, 25))
    land(days[50:])
    last = cli(root, *stream, "--set", "stream.max_files_per_batch=null")  # a replayed batch, then the rest at once
    assert last.returncode == 0, failure(last)
    batch = tmp_path / "batch"
    ingested = cli(batch, "ingest", "--set", f"input.path={landing}")
    assert ingested.returncode == 0, failure(ingested)
    for table in ("events", "quarantine"):
        assert_df_equality(
            spark.read.parquet(str(root / table)), spark.read.parquet(str(batch / table)), ignore_row_order=True
        )
    logged = spark.read.parquet(str(root / "stream" / "batches"))
    assert logged.select("batch_id").distinct().count() == logged.count()  # no batch committed twice
