"""The command line as a user runs it: a real process, its exit code and what it prints."""

import json
import os
import subprocess
import sys

import mlflow
import pytest

TINY = [
    "--set",
    "spark.master=local[2]",
    "--set",
    "spark.shuffle_partitions=2",
    "--set",
    "generate.events=3000",
    "--set",
    "generate.users=200",
    "--set",
    "generate.items=80",
    "--set",
    "generate.days=42",
    "--set",
    "spark.conf.spark.ui.enabled=false",
    "--set",
    "split.test_days=7",
    "--set",
    "tune.validation_days=7",
    "--set",
    "tune.space.rank=[4]",
    "--set",
    "tune.space.alpha=[5.0]",
    "--set",
    "tune.trials=2",
    "--set",
    "tune.space.max_iter=[3]",
    "--set",
    "als.max_iter=3",
]


def cli(*args, cwd):
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; a user's shell would not have it.
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HADOOP_CONF_DIR", "YARN_CONF_DIR")}
    return subprocess.run(
        [sys.executable, "-m", "recsys_spark.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(autouse=True)
def restore_tracking_uri():
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)


@pytest.mark.slow
def test_run_generates_ingests_and_prints_summary(tmp_path):
    out = cli(
        "run",
        "--set",
        f"output.root={tmp_path}/out",
        "--set",
        "spark.conf.spark.hadoop.fs.s3a.secret.key=hunter2",
        "--summary-json",
        "summary.json",
        *TINY,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())["stages"]
    steps = ["prepare", "tune", "als_fit", "evaluate", "refit", "save"]
    assert list(summary) == [
        "generate",
        "ingest",
        "train",
        "recommend",
        "items",
        "retention",
    ]  # items: skipped, no text.path
    assert list(summary["train"]["steps"]) == steps
    assert sum(summary["train"]["steps"].values()) <= summary["train"]["seconds"]
    assert summary["ingest"]["rows_read"] == summary["ingest"]["rows_clean"] + summary["ingest"]["rows_quarantined"]
    assert "  of which train: prepare " in out.stdout
    assert "== recsys-spark summary ==" in out.stdout
    assert "rows read" in out.stdout and f"wrote events: {tmp_path}/out/events" in out.stdout
    assert "ALS vs popularity baseline" in out.stdout and "ndcg_at_10" in out.stdout
    assert "rows from als" in out.stdout
    assert "retention of the three largest cohorts (week 1 / week 4, bounded)" in out.stdout
    assert "DAU/MAU, mean over the last 30 days" in out.stdout
    assert (tmp_path / "out" / "retention" / "retention_heatmap.png").exists()
    for table in ("events", "quarantine", "model", "eval/metrics", "recommendations", "retention/cohorts"):
        assert (tmp_path / "out" / table / "_SUCCESS").exists(), table
    assert not (tmp_path / "out" / "checkpoints").exists()  # removed after the successful run
    assert out.stdout.count("generated ") == 1 and f"raw events: {tmp_path}/out/raw" in out.stdout

    # MLflow: the default store is sqlite:///mlflow.db in the working directory.
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["recsys-spark"])
    by_name = runs.set_index("tags.mlflow.runName")
    parent = by_name.loc["pipeline"]
    assert parent.status == "FINISHED"
    stages = {"generate", "ingest", "train", "recommend", "retention"}
    assert stages <= set(by_name.index)
    for stage in stages:
        assert by_name.loc[stage, "tags.mlflow.parentRunId"] == parent.run_id
        assert by_name.loc[stage, "metrics.seconds_" + stage] >= 0
    assert all(by_name.loc["train", f"metrics.seconds_{s}"] > 0 for s in steps)
    trials = runs[runs["tags.job"] == "tune_trial"]
    assert len(trials) == 2 and set(trials["tags.mlflow.parentRunId"]) == {
        by_name.loc["train", "run_id"]
    }  # tune.trials=2
    assert set(trials["tags.state"]) <= {"complete", "pruned"} and trials["metrics.seconds"].notna().all()
    assert trials["params.rank"].tolist() == ["4", "4"] and trials["metrics.validation_ndcg_at_10"].notna().any()
    assert parent["params.spark.conf.spark.hadoop.fs.s3a.secret.key"] == "***"
    assert parent["params.spark_master"] == "local[2]" and parent["params.version_pyspark"].startswith("4.")
    assert parent["metrics.ndcg_at_10"] > 0 and parent["metrics.baseline_ndcg_at_10"] > 0
    assert parent["metrics.rows_read"] == parent["metrics.rows_clean"] + parent["metrics.rows_quarantined"]
    assert by_name.loc["ingest", "tags.data_rows"] == str(int(parent["metrics.rows_read"]))
    client = mlflow.MlflowClient()

    def art(run, path=None):
        return {a.path for a in client.list_artifacts(run, path)}

    assert "retention/retention_heatmap.png" in art(by_name.loc["retention", "run_id"], "retention")
    assert {"eval/metrics.csv", "eval/tuning.csv"} <= art(by_name.loc["train", "run_id"], "eval")
    assert "model/als" in art(by_name.loc["train", "run_id"], "model")
    assert "hunter2" not in mlflow.artifacts.load_text(f"runs:/{parent.run_id}/config/resolved.yaml")

    # The recommend job loads the model logged to MLflow, by run id.
    train_run = by_name.loc["train", "run_id"]
    rec = cli(
        "recommend",
        "--model",
        f"runs:/{train_run}/model",
        "--users",
        "u0000001,nobody",
        "--set",
        f"output.root={tmp_path}/out2",
        *TINY,
        cwd=tmp_path,
    )
    assert rec.returncode == 0, rec.stderr[-3000:]
    assert "rows from als" in rec.stdout and "rows from popular" in rec.stdout


@pytest.mark.slow
def test_tuning_without_room_before_the_validation_slice_is_a_clear_error(tmp_path):
    out = cli("run", "--set", f"output.root={tmp_path}/out", *TINY, "--set", "tune.validation_days=60", cwd=tmp_path)
    assert out.returncode == 2
    assert "error: tuning has no training data before the validation slice (60 days before the cutoff)" in out.stderr


def test_unknown_key_is_one_line_error_and_exit_2(tmp_path):
    out = cli("ingest", "--set", "ingest.max_bad_fractoin=0.1", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: unknown config key 'ingest.max_bad_fractoin'")


def test_missing_input_path_exits_non_zero_naming_it(tmp_path):
    out = cli("ingest", "--set", f"input.path={tmp_path}/nope", *TINY, cwd=tmp_path)
    assert out.returncode == 2
    assert f"error: input path not found: {tmp_path}/nope" in out.stderr
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run = mlflow.search_runs(experiment_names=["recsys-spark"]).iloc[0]
    assert (run.status, run["tags.job"]) == ("FAILED", "ingest")
    assert run["tags.error"].startswith("RecsysError: input path not found")
    assert "log4j" not in out.stderr  # caught before Spark started


@pytest.mark.parametrize(
    "master, message",
    [
        ("yarn", "error: spark.master is 'yarn' but neither HADOOP_CONF_DIR nor YARN_CONF_DIR is set"),
        ("spark://127.0.0.1:1", "error: spark.master 'spark://127.0.0.1:1': cannot reach 127.0.0.1:1"),
        ("local[x]", "error: spark.master 'local[x]' is not a Spark master URL"),
    ],
)
def test_a_master_spark_cannot_use_is_one_line_error(tmp_path, master, message):
    out = cli("train", "--set", f"spark.master={master}", "--set", "tracking.enabled=false", cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(message), out.stderr[-2000:]
