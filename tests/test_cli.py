"""The command line as a user runs it: a real process, its exit code and what it prints; the
errors that come before Spark starts through `cli.main` in the test's own process."""

import mlflow
import pytest

from recsys_spark import cli as recsys_cli

from support import cli, failure, tiny


@pytest.mark.slow
def test_run_generates_ingests_and_prints_summary(pipeline_run, tmp_path):
    base, out, summary = pipeline_run.base, pipeline_run, pipeline_run.stages
    # model.family auto: EASE's settings (λ x dropout) on ALS's validation users, both families on
    # the test split, the better serves.
    train = summary["train"]
    family, validation, ease = train["family"], train["validation"], train["ease"]
    assert family == (
        "ease" if validation["validation_ease_ndcg_at_10"] > validation["validation_als_ndcg_at_10"] else "als"
    )
    assert ease["ease_lambda"] in (10.0, 100.0) and ease["ease_users_evaluated"] == train["quality"]["users_evaluated"]
    assert ease["ease_dropout"] in (0.0, 0.25)
    assert list(train["ease_validation"]) == ["10", "100", "10 (dropout 0.25)", "100 (dropout 0.25)"]
    assert validation["validation_ease_ndcg_at_10"] == max(train["ease_validation"].values())
    served = "ease_fit" if family == "ease" else "refit"
    steps = ["prepare", "tune", "ease", "als_fit", "evaluate", "ease_evaluate", served, "save", "register"]
    # items: skipped, no text.path
    assert list(summary) == ["generate", "ingest", "train", "recommend", "items", "retention"]
    assert list(summary["train"]["steps"]) == steps
    assert sum(summary["train"]["steps"].values()) <= summary["train"]["seconds"]
    assert summary["ingest"]["rows_read"] == summary["ingest"]["rows_clean"] + summary["ingest"]["rows_quarantined"]
    assert "  of which train: prepare " in out.stdout
    assert "== recsys-spark summary ==" in out.stdout
    assert "rows read" in out.stdout and f"wrote events: {base}/out/events" in out.stdout
    assert "ALS vs popularity baseline" in out.stdout and "ndcg_at_10" in out.stdout
    assert f"rows from {family}" in out.stdout and f"  serves: {family.upper()} (validation " in out.stdout
    assert "retention of the three largest cohorts (week 1 / week 4, bounded)" in out.stdout
    assert "DAU/MAU, mean over the last 30 days" in out.stdout
    assert (base / "out" / "retention" / "retention_heatmap.png").exists()
    for table in ("events", "quarantine", "model", "eval/metrics", "recommendations", "retention/cohorts"):
        assert (base / "out" / table / "_SUCCESS").exists(), table
    assert not (base / "out" / "checkpoints").exists()  # removed after the successful run
    assert out.stdout.count("generated ") == 1 and f"raw events: {base}/out/raw" in out.stdout

    # MLflow: the default store is sqlite:///mlflow.db in the working directory.
    mlflow.set_tracking_uri(f"sqlite:///{base}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["recsys-spark"])
    by_name = runs.set_index("tags.mlflow.runName")
    parent = runs[runs["tags.job"] == "pipeline"].iloc[0]
    assert parent["tags.mlflow.runName"] == f"pipeline generated {parent.start_time:%Y-%m-%d}"  # dataset and day
    assert parent.status == "FINISHED"
    stages = {"generate", "ingest", "train", "recommend", "retention"}
    assert stages <= set(by_name.index)
    for stage in stages:
        assert by_name.loc[stage, "tags.mlflow.parentRunId"] == parent.run_id
        assert by_name.loc[stage, "metrics.seconds_" + stage] >= 0
    assert all(by_name.loc["train", f"metrics.seconds_{s}"] > 0 for s in steps)
    trials = runs[runs["tags.job"] == "tune_trial"]
    assert len(trials) == 3  # tune.trials=3
    assert set(trials["tags.mlflow.parentRunId"]) == {by_name.loc["train", "run_id"]}
    assert set(trials["tags.state"]) <= {"complete", "pruned"} and trials["metrics.seconds"].notna().all()
    assert all(4 <= int(r) <= 8 for r in trials["params.rank"])  # tune.space.rank: [4, 8]
    assert set(trials["params.max_iter"]) == {"5"} and set(trials["params.reg_param"]) == {"0.05"}  # one-value spaces
    assert trials["metrics.validation_ndcg_at_10"].notna().any()
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

    # The recommend job loads the model logged to MLflow, by run id (its own run goes to another
    # experiment of the same default store, so the pipeline's experiment stays as the run left it).
    train_run = by_name.loc["train", "run_id"]
    rec = cli(
        "recommend",
        "--model",
        f"runs:/{train_run}/model",
        "--users",
        "u0000001,nobody",
        *tiny(output__root=f"{tmp_path}/out2", tracking__enabled="true", tracking__experiment="by-run-id"),
        cwd=base,
    )
    assert rec.returncode == 0, failure(rec)
    assert f"rows from {family}" in rec.stdout and "rows from popular" in rec.stdout


@pytest.mark.slow
def test_tuning_without_room_before_the_validation_slice_is_a_clear_error(tmp_path):
    out = cli(
        "run", *tiny(output__root=f"{tmp_path}/out", tune__validation_days=60, tracking__enabled="true"), cwd=tmp_path
    )
    assert out.returncode == 2
    assert "error: tuning has no training data before the validation slice (60 days before the cutoff)" in out.stderr


def test_unknown_key_is_one_line_error_and_exit_2(capsys):
    assert recsys_cli.main(["ingest", "--set", "ingest.max_bad_fractoin=0.1"]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .startswith("error: unknown config key 'ingest.max_bad_fractoin'")
    )


def test_missing_input_path_exits_non_zero_naming_it(tmp_path):
    out = cli("ingest", *tiny(input__path=f"{tmp_path}/nope", tracking__enabled="true"), cwd=tmp_path)
    assert out.returncode == 2
    assert f"error: input path not found: {tmp_path}/nope" in out.stderr
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    run = mlflow.search_runs(experiment_names=["recsys-spark"]).iloc[0]
    assert (run.status, run["tags.job"]) == ("FAILED", "ingest")
    assert run["tags.error"].startswith("RecsysError: input path not found")
    assert "log4j" not in out.stderr  # caught before Spark started


def test_a_master_url_that_is_not_one_is_a_one_line_error(capfd):
    # Refused while the config is read, before any work: in-process.
    assert recsys_cli.main(["train", "--set", "spark.master=local[x]", "--set", "tracking.enabled=false"]) == 2
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: spark.master 'local[x]' is not a Spark master URL"), err[
        -2000:
    ]


@pytest.mark.parametrize(
    "master, message",
    [
        ("yarn", "error: spark.master is 'yarn' but neither HADOOP_CONF_DIR nor YARN_CONF_DIR is set"),
        ("spark://127.0.0.1:1", "error: spark.master 'spark://127.0.0.1:1': cannot reach 127.0.0.1:1"),
    ],
)
def test_a_master_spark_cannot_use_is_one_line_error(tmp_path, master, message):
    # Checked where the session is built, after the lock: a process of its own (no JVM starts), so
    # the single stderr line is everything the process printed.
    out = cli("train", "--set", f"spark.master={master}", "--set", "tracking.enabled=false", cwd=tmp_path)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith(message), out.stderr[-2000:]


def test_scheduler_switches_set_their_config_keys():
    parse = recsys_cli._parser().parse_args
    assert recsys_cli._config(parse(["run", "--if-changed"])).train.if_changed is True
    assert recsys_cli._config(parse(["train", "--if-changed"])).train.if_changed is True
    assert recsys_cli._config(parse(["run"])).train.if_changed is False
    assert recsys_cli._config(parse(["recommend", "--fold-in"])).recommend.fold_in is True
    assert recsys_cli._config(parse(["recommend"])).recommend.fold_in is False
    assert recsys_cli._config(parse(["stream", "--once"])).stream.once is True
    assert recsys_cli._config(parse(["stream"])).stream.once is False
