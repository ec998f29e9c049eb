"""Native BLAS/LAPACK: the session loads it when a library is found, results equal Java BLAS's, and
the OpenBLAS thread setting reaches the tasks."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from recsys_spark.infra import blas

from support import failure

REPO = Path(__file__).resolve().parent.parent

# One small fit and its top-5 per user, in a fresh JVM (a JVM keeps the BLAS it loaded first).
FIT = """
import json, sys
sys.path.insert(0, "tests")
from support import small_config
from recsys_spark.infra import blas
from recsys_spark.config import ALSConfig
from recsys_spark.recs.model import fit_als
from recsys_spark.infra.session import build_session
from recsys_spark.recs.topn import top_n
cfg = small_config(sys.argv[2])
cfg.spark.native_blas = sys.argv[1]
spark = build_session(cfg)
rows = [(u, i, float(1 + (u * 7 + i * 3) % 5)) for u in range(40) \
for i in range(30) if (u + i) % 3 and (u * i) % 7 != 1]
pairs = spark.createDataFrame(rows, "user_idx int, item_idx int, confidence float")
model = fit_als(pairs, ALSConfig(rank=8, max_iter=6, reg_param=0.1, alpha=5.0), implicit=True)
recs = top_n(model.userFactors, model.itemFactors, pairs.select("user_idx", "item_idx"), 5)\
.orderBy("user_idx", "rank").collect()
print(json.dumps({"loaded": blas.loaded(spark), "recs": [[r.user_idx, r.item_idx, r.score] for r in recs]}))
"""


def fit_with(setting: str, tmp_path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", FIT, setting, str(tmp_path / setting)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, failure(out)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_session_loads_native_blas_when_a_library_is_found(spark):
    native = blas.resolve("auto")
    if native.source == "none found":
        pytest.skip("no native BLAS here: no system libblas.so.3 and no loadable cmeel-openblas")
    got = blas.loaded(spark)
    assert (got["blas"], got["lapack"]) == ("JNIBLAS", "JNILAPACK"), got
    assert got["blas_source"] == native.source and got["blas_threads"] == "1"


@pytest.mark.slow
def test_native_blas_gives_the_same_recommendations_as_java_blas(tmp_path):
    if blas.resolve("auto").source == "none found":
        pytest.skip("no native BLAS here: no system libblas.so.3 and no loadable cmeel-openblas")
    native, java = fit_with("auto", tmp_path), fit_with("off", tmp_path)
    assert native["loaded"]["blas"] == "JNIBLAS" and java["loaded"]["blas"] != "JNIBLAS"
    assert java["loaded"]["lapack"] != "JNILAPACK"
    assert [r[:2] for r in native["recs"]] == [r[:2] for r in java["recs"]]  # same items, same order, every user
    for a, b in zip(native["recs"], java["recs"], strict=True):
        assert a[2] == pytest.approx(b[2], rel=1e-4, abs=1e-5)


def test_blas_threads_reach_the_tasks(spark):
    threads = F.udf(lambda _: __import__("os").environ.get("OPENBLAS_NUM_THREADS"), "string")
    assert {r[0] for r in spark.range(4).repartition(2).select(threads("id")).collect()} == {"1"}


def test_off_as_yaml_reads_it_is_off():
    from recsys_spark.config import load_config

    assert load_config(None, ["spark.native_blas=off"]).spark.native_blas == "false"  # YAML 1.1: off is a boolean
    assert blas.resolve("false") == blas.resolve("off") == blas.NativeBlas("off")


def test_a_missing_library_path_is_a_clear_error():
    with pytest.raises(blas.RecsysError, match=r"spark.native_blas='/no/such/libopenblas.so' is not a file"):
        blas.resolve("/no/such/libopenblas.so")


def test_executors_are_probed_in_their_own_jvm(spark):
    got = blas.executors(spark, tasks=4)
    pid = str(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    assert [e["pid"] for e in got] == [pid]  # local mode: the driver's JVM runs every task
    assert got[0]["blas"] == blas.loaded(spark)["blas"] and got[0]["blas_threads"] == "1"


def test_a_library_is_used_only_when_it_runs_blas_on_this_cpu():
    # libm loads but has no daxpy/dgemm: loading alone is not enough (a build for another CPU loads, then dies).
    assert blas._loads("libm.so.6") and not blas._loads("libm.so.6", run=True)
    native = blas.resolve("auto")
    if native.source == "none found":
        pytest.skip("no native BLAS here: no system libblas.so.3 and no cmeel-openblas this CPU can run")
    assert blas._loads(native.library or blas.SYSTEM[0], native.loader_dir, run=True)


def test_a_wheel_that_loads_but_cannot_run_is_not_used_and_says_so(monkeypatch, caplog):
    # As the cmeel wheel (an AVX-512 build) on a CPU without AVX-512, where no system BLAS is found:
    # dlopen succeeds, the first wide kernel dies of SIGILL.
    if blas.wheel_openblas() is None:
        pytest.skip("the cmeel-openblas wheel is not installed")
    monkeypatch.setattr(blas, "_loads", lambda lib, loader_dir=None, run=False: lib != blas.SYSTEM[0] and not run)
    with caplog.at_level("WARNING", "recsys_spark"):
        assert blas.resolve("auto") == blas.NativeBlas("none found")
    assert "loads but cannot run on this CPU" in caplog.text and "ALS uses Java BLAS" in caplog.text
