"""spark-submit against a real standalone cluster (1 master, 2 workers on 127.0.0.1).

The same pipeline and config run once with --master local[2] and once on the cluster; their
outputs must match, and the MLflow run must record the cluster's master.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark import blas

REPO = Path(__file__).resolve().parent.parent
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    script = REPO / "scripts" / "standalone-cluster.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    out = subprocess.run(
        ["bash", str(script), "start", str(d), "2"], capture_output=True, text=True, env=env, timeout=180
    )
    assert out.returncode == 0, out.stderr
    yield out.stdout.strip()
    subprocess.run(["bash", str(script), "stop", str(d)], env=env, timeout=120)


@pytest.fixture(scope="module")
def pyfiles(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    return shutil.make_archive(str(d / "recsys_spark"), "zip", str(REPO), "recsys_spark")


def submit(master: str, root: Path, pyfiles: str, *extra: str) -> subprocess.CompletedProcess:
    overrides = [
        f"output.root=file://{root}/out",
        f"spark.checkpoint_dir=file://{root}/checkpoints",
        "input.path=null",
        f"tracking.uri=sqlite:///{root}/mlflow.db",
        "spark.shuffle_partitions=4",
        "spark.conf.spark.executor.memory=1g",
        "spark.conf.spark.executor.cores=1",
        "spark.conf.spark.ui.showConsoleProgress=false",
        "generate.events=4000",
        "generate.users=240",
        "generate.items=80",
        "generate.days=42",
        "generate.users_per_chunk=60",
        "split.test_days=7",
        "split.followup_days=7",
        "tune.enabled=false",
        "als.rank=8",
        "als.max_iter=5",
        "als.num_user_blocks=2",
        "als.num_item_blocks=2",
        "retention.granularity=week",
    ]
    sets = [a for o in overrides for a in ("--set", o)]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env |= {"PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    cmd = [
        str(SPARK_SUBMIT),
        "--master",
        master,
        "--py-files",
        pyfiles,
        *extra,
        str(REPO / "jobs" / "pipeline.py"),
        "--config",
        str(REPO / "conf" / "cluster.yaml"),
        *sets,
    ]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, env=env, timeout=900)


def test_cluster_run_matches_local_mode_and_records_the_master(spark, cluster, pyfiles, tmp_path):
    local, remote = tmp_path / "local", tmp_path / "cluster"
    local.mkdir(), remote.mkdir()
    a = submit("local[2]", local, pyfiles)
    assert a.returncode == 0, a.stderr[-4000:]
    b = submit(cluster, remote, pyfiles, "--total-executor-cores", "2")
    assert b.returncode == 0, b.stderr[-4000:]
    assert "ALS vs popularity baseline" in b.stdout

    def read(root, table):
        return spark.read.parquet(f"{root}/out/{table}")

    assert_df_equality(read(remote, "events"), read(local, "events"), ignore_row_order=True)
    assert_df_equality(read(remote, "retention/cohorts"), read(local, "retention/cohorts"), ignore_row_order=True)

    def recs(root):
        return read(root, "recommendations").drop("run_id", "run_date", "because", "why")

    assert_approx_df_equality(recs(remote), recs(local), 1e-3, ignore_row_order=True)

    # The reasons too (their shares flat, so the float tolerance applies to them).
    def reasons(root):
        return (
            read(root, "recommendations")
            .select("user_id", "rank", F.posexplode("because"))
            .select("user_id", "rank", "pos", "col.item_id", "col.share")
        )

    assert_approx_df_equality(reasons(remote), reasons(local), 1e-3, ignore_row_order=True)

    mlflow.set_tracking_uri(f"sqlite:///{remote}/mlflow.db")
    parent = mlflow.search_runs(experiment_names=["recsys-spark"], filter_string="tags.job = 'pipeline'").iloc[0]
    assert parent["params.spark_master"] == cluster
    assert parent.status == "FINISHED"
    # The model was logged from inside --py-files recsys_spark.zip: the registered pyfunc still loads and answers.
    served = mlflow.pyfunc.load_model("models:/recsys-spark@champion")
    table = read(remote, "recommendations").where("source = 'als'")
    user = table.agg(F.min("user_id")).first()[0]
    got = served.predict(pd.DataFrame({"user_id": [user]}))
    assert list(got.item_id) == [r.item_id for r in table.where(F.col("user_id") == user).orderBy("rank").collect()]


def test_a_local_checkpoint_path_on_a_cluster_is_refused(cluster, pyfiles, tmp_path):
    # (file:// URIs pass: the test above runs the cluster with them.)
    bad = subprocess.run(
        [
            str(SPARK_SUBMIT),
            "--master",
            cluster,
            "--py-files",
            pyfiles,
            str(REPO / "jobs" / "train.py"),
            "--set",
            "spark.checkpoint_dir=checkpoints",
            "--set",
            f"output.root=file://{tmp_path}/o",
            "--set",
            "tracking.enabled=false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    # spark-submit's PythonRunner merges the driver's stderr into its stdout.
    errors = [line for line in (bad.stdout + bad.stderr).splitlines() if line.startswith("error:")]
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert errors and errors[0].startswith(
        f"error: spark.checkpoint_dir is the local path 'checkpoints' but the master is {cluster}"
    ), bad.stderr[-3000:]


def test_executors_load_native_blas_with_the_configured_threads(cluster, pyfiles, tmp_path):
    native = blas.resolve("auto")
    if native.source == "none found":
        pytest.skip("no native BLAS here: no system libblas.so.3 and no loadable cmeel-openblas")
    sets = [
        "--set",
        "spark.blas_threads=2",
        "--set",
        "tracking.enabled=false",
        "--set",
        f"output.root=file://{tmp_path}/o",
        "--set",
        f"spark.checkpoint_dir=file://{tmp_path}/ckpt",
    ]
    out = subprocess.run(
        [
            str(SPARK_SUBMIT),
            "--master",
            cluster,
            "--py-files",
            pyfiles,
            "--total-executor-cores",
            "2",
            str(REPO / "tests" / "blas_probe.py"),
            *sets,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"},
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    executors = got["executors"]
    assert executors and all(e["pid"] != got["driver_pid"] for e in executors), got  # asked in the workers' JVMs
    assert {(e["blas"], e["lapack"], e["blas_threads"]) for e in executors} == {("JNIBLAS", "JNILAPACK", "2")}, got
    assert "executors (" in got["describe"] and "JNIBLAS/JNILAPACK, OpenBLAS threads 2" in got["describe"], got[
        "describe"
    ]
