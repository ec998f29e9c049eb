"""ALS fit seconds under other Spark settings, on the same cached interactions, in one run.

The configured settings are fitted first and again last, so the spread of two identical fits
shows the noise the other ratios sit in. A short warm-up fit first keeps JIT compilation out of
the first measurement.
"""

from __future__ import annotations

import dataclasses

from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame

from recsys_spark.config import ALSConfig
from recsys_spark.model import fit_als

from .common import timed

VARIANTS: list[tuple[str, dict]] = [
    ("Spark's own defaults (10 blocks, checkpoint 10)", {"num_user_blocks": 10, "num_item_blocks": 10, "checkpoint_interval": 10}),
    ("1 block", {"num_user_blocks": 1, "num_item_blocks": 1}),
    ("4 blocks", {"num_user_blocks": 4, "num_item_blocks": 4}),
    ("no checkpoint", {"checkpoint_interval": -1}),
    ("MEMORY_ONLY blocks + factors", {"intermediate_storage_level": "MEMORY_ONLY", "final_storage_level": "MEMORY_ONLY"}),
]


def describe(als: ALSConfig, parallelism: int) -> str:
    blocks = als.num_user_blocks or parallelism
    return f"{blocks} blocks, checkpoint {als.checkpoint_interval}, {als.intermediate_storage_level}"


def sweep(inter: DataFrame, als: ALSConfig) -> tuple[ALSModel, float, list[dict]]:
    """Fit the configured ALS (twice) and each variant; rows of seconds and ratio to the configured fit."""
    fit_als(inter, dataclasses.replace(als, max_iter=2), implicit=True)  # warm-up
    t_first, model = timed(lambda: fit_als(inter, als, implicit=True))
    rows = [{"setting": name, "seconds": timed(lambda: fit_als(inter, dataclasses.replace(als, **change), implicit=True))[0]}
            for name, change in VARIANTS]
    t_last, _ = timed(lambda: fit_als(inter, als, implicit=True))
    ours = (t_first + t_last) / 2
    configured = f"configured ({describe(als, inter.sparkSession.sparkContext.defaultParallelism)})"
    rows = [{"setting": configured, "seconds": t_first}, *rows, {"setting": configured + ", again", "seconds": t_last}]
    for r in rows:
        r["ratio"] = round(r["seconds"] / ours, 2)
        r["seconds"] = round(r["seconds"], 2)
    return model, ours, rows


def print_sweep(rows: list[dict]) -> None:
    print(f"\nALS fit by setting (same interactions, same run; ratio to the configured fit's mean):")
    for r in rows:
        print(f"  {r['setting']:<58}{r['seconds']:>8.1f} s{r['ratio']:>7.2f}x")
