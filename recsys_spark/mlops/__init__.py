"""MLflow: tracking, the registry, the served pyfunc, the run report and `compare`. None of
these imports pyspark (tests/test_boundaries.py): a serving or reporting host needs no Spark.

Submodules are imported where used (`from recsys_spark.mlops import compare`), not here, so that
importing one never loads the others (and with them pyspark).
"""

__all__ = ["compare", "registry", "report", "serving", "tracking"]
