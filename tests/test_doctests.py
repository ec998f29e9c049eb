"""The examples in the docstrings of the pure functions people reuse (kernels, the effect
estimator's statistics, the arms) run as tests, so they stay true."""

import doctest
import importlib

import pytest

MODULES = ["recsys_spark.recs.kernels", "recsys_spark.analytics.estimator", "recsys_spark.analytics.arms"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
