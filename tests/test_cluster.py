"""spark-submit against a real standalone cluster (1 master, 2 workers on 127.0.0.1).

The same pipeline and config run once with --master local[2] and once on the cluster; their
outputs must match, and the MLflow run must record the cluster's master.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.infra import blas

from support import bash, failure

REPO = Path(__file__).resolve().parent.parent
SPARK_SUBMIT = Path(sys.executable).parent / "spark-submit"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(standalone) -> str:
    """The README block's cluster (1 master, 2 workers of 1 core on 127.0.0.1), up for the session."""
    return standalone.master


@pytest.fixture(scope="module")
def pyfiles(standalone) -> str:
    """What the block's `make dist` built: the zip of recsys_spark for --py-files."""
    return standalone.pyfiles


def local_twin(standalone, root: Path) -> str:
    """The block's spark-submit command with --master local[2] and its output, checkpoints and MLflow
    store under `root`: the same pipeline on the same settings, in local mode."""
    master = '"$(cat /tmp/spark-cluster/master-url)"'
    assert master in standalone.submit, standalone.submit
    script = standalone.submit.replace(master, "local[2]")
    for path, name in (("/tmp/recsys-out", "out"), ("/tmp/recsys-ckpt", "checkpoints")):
        assert f"file://{path}" in script, path
        script = script.replace(f"file://{path}", f"file://{root}/{name}")
    return f"{script} --set tracking.uri=sqlite:///{root}/mlflow.db"


def test_cluster_run_matches_local_mode_and_records_the_master(spark, standalone, tmp_path):
    # The README block ran the pipeline on the cluster (outputs in /tmp/recsys-out, MLflow's default
    # store in the clone); the same command runs here with --master local[2].
    b = standalone.job
    assert b.returncode == 0, failure(b)
    assert "ALS vs popularity baseline" in b.stdout
    a = bash(local_twin(standalone, tmp_path), standalone.clone)
    assert a.returncode == 0, failure(a)
    roots = {"local": tmp_path / "out", "cluster": Path("/tmp/recsys-out")}

    def read(root, table):
        return spark.read.parquet(f"{roots[root]}/{table}")

    assert_df_equality(read("cluster", "events"), read("local", "events"), ignore_row_order=True)
    assert_df_equality(read("cluster", "retention/cohorts"), read("local", "retention/cohorts"), ignore_row_order=True)

    def recs(root):
        return read(root, "recommendations").drop("run_id", "run_date", "model_id", "because", "why")

    assert_approx_df_equality(recs("cluster"), recs("local"), 1e-3, ignore_row_order=True)

    # The reasons too (their shares flat, so the float tolerance applies to them).
    def reasons(root):
        return (
            read(root, "recommendations")
            .select("user_id", "rank", F.posexplode("because"))
            .select("user_id", "rank", "pos", "col.item_id", "col.share")
        )

    assert_approx_df_equality(reasons("cluster"), reasons("local"), 1e-3, ignore_row_order=True)

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")  # the twin ran in local mode
    twin = mlflow.search_runs(experiment_names=["recsys-spark"], filter_string="tags.job = 'pipeline'").iloc[0]
    assert twin["params.spark_master"] == "local[2]"
    mlflow.set_tracking_uri(f"sqlite:///{standalone.clone}/mlflow.db")
    parent = mlflow.search_runs(experiment_names=["recsys-spark"], filter_string="tags.job = 'pipeline'").iloc[0]
    assert parent["params.spark_master"] == standalone.master
    assert parent.status == "FINISHED"
    # The model was logged from inside --py-files recsys_spark.zip: the registered pyfunc still loads and answers.
    served = mlflow.pyfunc.load_model("models:/recsys-spark@champion")
    table = read("cluster", "recommendations").where("source IN ('als', 'ease')")  # the family auto chose
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


def test_the_driver_listens_on_loopback_and_executors_load_native_blas_with_the_configured_threads(
    cluster, pyfiles, tmp_path
):
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
    assert out.returncode == 0, failure(out)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    # Issue 27, defect 16: under the README block's SPARK_LOCAL_IP the driver's every port (RPC, block
    # manager, the UI, which is on) is on 127.0.0.1, not the machine's external interface or 0.0.0.0.
    ui_port = int(got["ui"].rsplit(":", 1)[1])
    assert ui_port in {port for _, port in got["listening"]}, got
    assert {host for host, _ in got["listening"]} == {"127.0.0.1"}, got["listening"]
    if blas.resolve("auto").source == "none found":
        pytest.skip("no native BLAS here: no system libblas.so.3 and no loadable cmeel-openblas")
    executors = got["executors"]
    assert executors and all(e["pid"] != got["driver_pid"] for e in executors), got  # asked in the workers' JVMs
    assert {(e["blas"], e["lapack"], e["blas_threads"]) for e in executors} == {("JNIBLAS", "JNILAPACK", "2")}, got
    assert "executors (" in got["describe"] and "JNIBLAS/JNILAPACK, OpenBLAS threads 2" in got["describe"], got[
        "describe"
    ]
