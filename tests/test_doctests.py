"""The examples in the docstrings of the functions people reuse run as tests, so they stay true:
the numpy kernels, the effect estimator's statistics, the arms and the split's cutoff in plain
Python; the ranking metrics and the retention periods against the suite's local[2] session, as
pyspark.ml's own doctests run (`spark` and `F` are in their globals)."""

import doctest
import importlib

import pytest
from pyspark.sql import functions as F

PLAIN = ["recsys_spark.recs.kernels", "recsys_spark.analytics.estimator", "recsys_spark.analytics.arms"]
PLAIN += ["recsys_spark.recs.split", "recsys_spark.recs.training", "recsys_spark.recs.model"]
ON_SPARK = ["recsys_spark.recs.evaluation", "recsys_spark.analytics.cohorts"]


def run_examples(name: str, **globs) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, extraglobs=globs, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0


@pytest.mark.parametrize("name", PLAIN)
def test_docstring_examples(name):
    run_examples(name)


@pytest.mark.parametrize("name", ON_SPARK)
def test_docstring_examples_on_spark(name, spark):
    run_examples(name, spark=spark, F=F)
