"""The retention pictures' scales, on hand-built cohort tables (no Spark)."""

import numpy as np
import pandas as pd
import pytest

from recsys_spark.analytics.plots import colour_scale, retention_matrix, weighted_curve


def cells(rows: list[tuple[str, int, float, int, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["cohort", "period", "retention", "cohort_size", "complete"]).assign(
        kind="bounded"
    )


def test_the_heatmap_spends_its_colours_on_periods_one_and_later():
    table = cells(
        [("w1", 0, 1.0, 10, True), ("w1", 1, 0.2, 10, True), ("w2", 0, 1.0, 5, True), ("w2", 1, 0.1, 5, True)]
    )
    coloured, top = colour_scale(retention_matrix(table))
    assert top == 0.2  # not 1.0: period 0 is always 100%
    assert np.isnan(coloured[:, 0]).all() and coloured[:, 1].tolist() == [0.2, 0.1]


def test_the_mean_curve_stops_where_few_users_remain():
    # An old cohort of 20 users observed for 4 periods, a young one of 100 for 2. From period 2 only
    # 20 of period 0's 120 users (17% < 20%) are observed: the mean is cut there, not left to climb
    # to the old cohort's 0.4. Period 1: (20 x 0.5 + 100 x 0.6) / 120 = 0.58333.
    table = cells(
        [("old", p, r, 20, True) for p, r in enumerate([1.0, 0.5, 0.4, 0.3])]
        + [("young", 0, 1.0, 100, True), ("young", 1, 0.6, 100, True), ("young", 2, 0.5, 100, False)]
    )
    curve = weighted_curve(table)
    assert curve.index.tolist() == [0, 1]
    assert curve.tolist() == pytest.approx([1.0, 70 / 120])
