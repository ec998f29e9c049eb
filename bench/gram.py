"""`python -m bench.gram`: EASE's Gram matrix on Online Retail's pairs, per-task counting
(`ease.gram`) against the Spark self-join and aggregation it replaced (the baseline, kept here);
then on the same Gram, B = (G + λI)⁻¹ through the Cholesky factor in place (`ease.weights`) against
numpy's general inverse it replaced, and every user's scores X·B from sparse histories (what
`kernels.score_batch` does for EASE) against the dense X it replaced.

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


def general_inverse(g: np.ndarray, lam: float) -> np.ndarray:
    """B before 2026-12-07: numpy's LU inverse of G + λI."""
    p = np.linalg.inv(g + lam * np.eye(len(g)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def solve_and_score(frame: pd.DataFrame, items: np.ndarray, g: np.ndarray) -> None:
    """The inverse and the scores, each way twice in alternation; the second (warm) run compared."""
    from scipy import sparse

    users = frame.user_idx.to_numpy()
    col = np.searchsorted(items, frame.item_idx.to_numpy())
    x = sparse.csr_array((np.ones(len(frame), np.float32), (users, col)), shape=(users.max() + 1, items.size))
    b = np.ascontiguousarray(
        ease.weights(g, ease.Setting(200.0)), dtype=np.float32
    )  # row-major, as ease_top_n broadcasts it

    def dense() -> np.ndarray:
        return np.vstack([x[r : r + 1024].toarray() @ b for r in range(0, x.shape[0], 1024)])

    ways = {
        "cholesky": lambda: ease.weights(g, ease.Setting(200.0)),
        "general_inverse": lambda: general_inverse(g, 200.0),
        "sparse_scores": lambda: x @ b,
        "dense_scores": dense,
    }
    seconds: dict[str, float] = {}
    out = {}
    for _ in range(2):
        for name, fn in ways.items():
            t0 = time.perf_counter()
            out[name] = fn()
            seconds[name] = time.perf_counter() - t0
            print(f"[bench] {name}: {seconds[name]:.2f} s", flush=True)
    assert np.allclose(out["cholesky"], out["general_inverse"], atol=1e-5)
    assert np.allclose(out["sparse_scores"], out["dense_scores"], atol=1e-4)
    print(
        f"B for {items.size:,} items (warm): Cholesky in place {seconds['cholesky']:.2f} s, numpy inverse "
        f"{seconds['general_inverse']:.2f} s (baseline); ratio {seconds['cholesky'] / seconds['general_inverse']:.2f}x"
    )
    print(
        f"X·B for {x.shape[0]:,} users, {x.nnz:,} history items (warm): sparse {seconds['sparse_scores']:.2f} s, "
        f"dense {seconds['dense_scores']:.2f} s (baseline); ratio "
        f"{seconds['sparse_scores'] / seconds['dense_scores']:.3f}x"
    )


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
    solve_and_score(frame, items, grams["per_task"])


if __name__ == "__main__":
    main()
