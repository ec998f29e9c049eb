"""How much a recommend run's lists moved against the previous run's: a drift report per run.

- `users_changed`: the share of users served by both runs whose set of listed items changed;
- `psi_items`: the population stability index of item popularity in the lists (each item's share
  of list slots in this run against the previous one);
- `psi_scores`: the PSI of the model's scores (rows scored by the model, not popular fallbacks)
  over the previous run's score deciles;
- `coverage`, `coverage_change`: distinct items listed / items in the model's catalogue, and its
  change; `items_new`, `items_vanished`: items listed now and not before, and the reverse.

PSI = sum over bins of (p - q) ln(p / q), with a share of 0 floored at PSI_FLOOR (the usual
convention); below 0.1 is commonly read as stable, above 0.25 as a shift. An association between
runs, not a cause: a new model, new events and new filters all move it.
"""

from __future__ import annotations

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.names import POPULAR, UNKNOWN_USER

PSI_FLOOR = 1e-4
SCORE_BINS = 10


def psi(current: np.ndarray, previous: np.ndarray) -> float:
    """The PSI of two count vectors over the same bins.

    >>> round(psi(np.array([50, 50]), np.array([50, 50])), 6)
    0.0
    >>> round(psi(np.array([75, 25]), np.array([50, 50])), 4)  # (0.25 ln 1.5) + (-0.25 ln 0.5)
    0.2747
    """
    p = np.maximum(current / max(current.sum(), 1), PSI_FLOOR)
    q = np.maximum(previous / max(previous.sum(), 1), PSI_FLOOR)
    return float(np.sum((p - q) * np.log(p / q)))


def drift(current: DataFrame, previous: DataFrame, catalogue: int) -> dict[str, float]:
    """The drift figures (see the module) of lists `current` against `previous`, both with
    (user_id, item_id, score, source); `catalogue` is the number of items the model could list."""
    items = (
        current.groupBy("item_id")
        .agg(F.count("*").alias("now"))
        .join(previous.groupBy("item_id").agg(F.count("*").alias("before")), "item_id", "full")
        .fillna(0)
        .toPandas()  # catalogue-sized
    )
    now, before = items["now"].to_numpy(float), items["before"].to_numpy(float)
    sets = [
        df.groupBy("user_id").agg(F.array_sort(F.collect_set("item_id")).alias(name))
        for df, name in ((current, "a"), (previous, "b"))
    ]
    both = (
        sets[0]
        .join(sets[1], "user_id")
        .agg(F.count("*").alias("users"), F.sum((F.col("a") != F.col("b")).cast("int")).alias("changed"))
        .first()
    )
    scored = [df.where(~F.col("source").isin(POPULAR, UNKNOWN_USER)) for df in (current, previous)]
    edges = scored[1].approxQuantile("score", [i / SCORE_BINS for i in range(1, SCORE_BINS)], 0.001)
    bins = [_binned(df, edges) for df in scored]
    shown_now, shown_before = int((now > 0).sum()), int((before > 0).sum())
    return {
        "users_compared": float(both["users"]),
        "users_changed": (both["changed"] or 0) / both["users"] if both["users"] else 0.0,
        "psi_items": psi(now, before),
        "psi_scores": psi(*bins) if edges else 0.0,
        "coverage": shown_now / catalogue if catalogue else 0.0,
        "coverage_change": (shown_now - shown_before) / catalogue if catalogue else 0.0,
        "items_new": float(((now > 0) & (before == 0)).sum()),
        "items_vanished": float(((before > 0) & (now == 0)).sum()),
    }


def _binned(scored: DataFrame, edges: list[float]) -> np.ndarray:
    """Counts of `score` in the bins the sorted `edges` cut (bin i: edges[i-1] <= score < edges[i])."""
    b = F.lit(0)
    for e in edges:
        b = b + (F.col("score") >= F.lit(e)).cast("int")
    counts = {r["b"]: r["count"] for r in scored.select(b.alias("b")).groupBy("b").count().collect()}
    return np.array([counts.get(i, 0) for i in range(len(edges) + 1)], float)
