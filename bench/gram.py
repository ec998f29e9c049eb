"""`python -m bench.gram`: EASE's Gram matrix on Online Retail's pairs, per-task counting
(`ease.gram`) against the Spark self-join and aggregation it replaced (the baseline, kept here).

The vendored data's distinct (CustomerID, StockCode) pairs (267,615 pairs, 4,372 users, 3,684
items, 48M co-occurrence cells), read with pandas, numbered, cached in Spark local[2] with 4
shuffle partitions; each method runs twice in alternation and the second (warm) run is compared.
Prints the machine, the sizes and the ratio.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.infra.session import build_session
from recsys_spark.recs import ease

from .common import RESULTS, machine

DATA = Path(__file__).resolve().parent.parent / "data" / "online_retail" / "online_retail.csv.gz"


def self_join(pairs: DataFrame, items: np.ndarray) -> np.ndarray:
    """The Gram before 2026-12-07: users' pairs joined on user, counted per (i, j), collected as cells."""
    x = pairs.select("user_idx", "item_idx").distinct()
    cells = (
        x.withColumnRenamed("item_idx", "i")
        .join(x.withColumnRenamed("item_idx", "j"), "user_idx")
        .groupBy("i", "j")
        .agg(F.count("*").cast("double").alias("count"))
        .toPandas()
    )
    pos = np.full(int(items.max()) + 1, -1)
    pos[items] = np.arange(items.size)
    g = np.zeros((items.size, items.size))
    g[pos[cells["i"].to_numpy()], pos[cells["j"].to_numpy()]] = cells["count"].to_numpy()
    return g


def main() -> None:
    cfg = Config()
    cfg.spark.master, cfg.spark.shuffle_partitions = "local[2]", 4
    cfg.spark.conf = {"spark.ui.enabled": "false"}
    cfg.output.root = str(RESULTS / "gram")
    spark = build_session(cfg)
    raw = pd.read_csv(DATA, dtype=str, encoding="latin-1")[["CustomerID", "StockCode"]].dropna().drop_duplicates()
    frame = pd.DataFrame(
        {
            "user_idx": raw.CustomerID.astype("category").cat.codes.astype("int32"),
            "item_idx": raw.StockCode.astype("category").cat.codes.astype("int32"),
        }
    )
    pairs = spark.createDataFrame(frame).repartition(4).cache()
    items = np.sort(frame.item_idx.unique().astype(np.int64))
    cells = int((frame.groupby("user_idx").size().astype(np.int64) ** 2).sum())
    print(f"machine: {machine()}; {len(frame):,} pairs, {items.size:,} items, {cells:,} cells", flush=True)
    seconds: dict[str, list[float]] = {}
    grams = {}
    for name, fn in (("per_task", ease.gram), ("self_join", self_join)) * 2:
        t0 = time.perf_counter()
        grams[name] = fn(pairs, items)
        seconds.setdefault(name, []).append(time.perf_counter() - t0)
        print(f"[bench] {name}: {seconds[name][-1]:.2f} s", flush=True)
    assert np.array_equal(grams["per_task"], grams["self_join"])
    warm = {name: s[-1] for name, s in seconds.items()}
    print(
        f"Gram of {cells:,} cells (warm): per-task count {warm['per_task']:.2f} s, self-join {warm['self_join']:.2f} s "
        f"(baseline); ratio {warm['per_task'] / warm['self_join']:.2f}x"
    )
    spark.stop()


if __name__ == "__main__":
    main()
