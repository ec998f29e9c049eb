"""ALS fit seconds under other Spark settings, on the same cached interactions, in one run.

Every round fits the configured settings, then each variant; the configured fit runs once more
at the end, so even one round shows the spread of identical fits, the noise the ratios sit in.
A short warm-up fit first keeps JIT compilation out of the first measurement.
"""

from __future__ import annotations

import dataclasses
import statistics

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame

from recsys_spark.config import ALSConfig
from recsys_spark.recs.model import fit_als

from .common import timed

VARIANTS: list[tuple[str, dict]] = [
    (
        "Spark's own defaults (10 blocks, checkpoint 10)",
        {"num_user_blocks": 10, "num_item_blocks": 10, "checkpoint_interval": 10},
    ),
    ("1 block", {"num_user_blocks": 1, "num_item_blocks": 1}),
    ("4 blocks", {"num_user_blocks": 4, "num_item_blocks": 4}),
    ("no checkpoint", {"checkpoint_interval": -1}),
    (
        "MEMORY_ONLY blocks + factors",
        {"intermediate_storage_level": "MEMORY_ONLY", "final_storage_level": "MEMORY_ONLY"},
    ),
]


def sweep(inter: DataFrame, als: ALSConfig, rounds: int = 1) -> tuple[ALSModel, float, list[dict]]:
    """The configured ALS's model and median fit seconds, and a row per setting: median, range, ratio."""
    blocks = als.num_user_blocks or inter.sparkSession.sparkContext.defaultParallelism
    configured = f"configured ({blocks} blocks, checkpoint {als.checkpoint_interval}, {als.intermediate_storage_level})"

    def fit(change):
        return timed(
            lambda: fit_als(inter, dataclasses.replace(als, **change), implicit=True),
            f"ALS fit {change or 'configured'}",
        )

    fit({"max_iter": 2})  # warm-up
    secs, model = fit({})
    seconds: dict[str, list[float]] = {configured: [secs]}
    for _ in range(rounds):
        for name, change in VARIANTS:
            seconds.setdefault(name, []).append(fit(change)[0])
        seconds[configured].append(fit({})[0])
    ours = statistics.median(seconds[configured])
    rows = [
        {
            "setting": name,
            "seconds": round(statistics.median(s), 2),
            "min": round(min(s), 2),
            "max": round(max(s), 2),
            "fits": len(s),
            "ratio": round(statistics.median(s) / ours, 2),
        }
        for name, s in seconds.items()
    ]
    return model, ours, rows


def print_sweep(rows: list[dict]) -> None:
    print("\nALS fit by setting (same interactions, same run; median seconds, range, ratio to the configured median):")
    for r in rows:
        print(
            f"  {r['setting']:<52}{r['seconds']:>7.1f} s  "
            f"({r['min']:.1f}-{r['max']:.1f}, {r['fits']} fits){r['ratio']:>7.2f}x"
        )
