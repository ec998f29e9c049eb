"""The Spark-free boundary: the served model, `report` and `compare` import no pyspark, so a
serving or reporting host needs no Spark. Checked in a fresh interpreter where pyspark cannot be
imported at all: MLflow itself tries `import pyspark` whenever it is installed (and carries on
without it), so in this venv the check is that nothing of ours needs it. The fresh-venv test in
test_serving.py loads the registered model where pyspark is not installed."""

import pytest

from support import failure, without_pyspark

SPARK_FREE = [
    "recsys_spark",
    "recsys_spark.mlops.serving",
    "recsys_spark.mlops.report",
    "recsys_spark.mlops.compare",
    "recsys_spark.mlops.tracking",
    "recsys_spark.mlops.registry",
    "recsys_spark.recs.kernels",
    "recsys_spark.infra.lock",
    "recsys_spark.infra.versions",
    "recsys_spark.config",
    "recsys_spark.cli",
]


@pytest.mark.parametrize("name", SPARK_FREE)
def test_serving_and_reporting_modules_import_without_pyspark(name):
    out = without_pyspark(f"import {name}")  # a module-level pyspark import anywhere on the way fails it
    assert out.returncode == 0, failure(out)


def test_the_blocker_does_block_a_spark_module():
    """The check above can fail: a module that needs Spark does not import under it."""
    out = without_pyspark("import recsys_spark.recs.topn")
    assert out.returncode == 1 and "blocked: a host without Spark" in out.stderr
