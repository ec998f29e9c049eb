"""EASE (Steck, WWW 2019), a closed-form item-item model, scored beside ALS on the same split.

With X the binary users x items matrix of training pairs, G = XᵀX (co-occurrence counts),
P = (G + λI)⁻¹ and B = I - P·diag(1/diag(P)) (so diag(B) = 0), a user's score for item j is
Σ over the user's items i of B[i, j]. G is aggregated by Spark from the pairs (never a dense users x
items matrix); the n x n inverse runs on the driver in numpy, for catalogues up to `max_items`
(about n² x 56 bytes at the peak: four float64 matrices and the collected cells); top-N streams
users through `mapInArrow` with B broadcast, using the same blocked kernel as ALS (a user's
"factors" are their binary history over the catalogue, the "item factors" are B's columns), seen
items excluded and ties broken as for ALS.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.errors import RecsysError
from recsys_spark.recs.evaluation import per_user_metrics, relevant_items, summarize
from recsys_spark.recs.kernels import block_rows, score_batch
from recsys_spark.recs.topn import TOPN_SCHEMA

USERS_PER_SLICE = 1024  # dense histories built per slice of an Arrow batch: 1,024 x n float32


def gram(pairs: DataFrame) -> DataFrame:
    """(i, j, count): users who have both items i and j (XᵀX of the binary pairs), nonzero cells only."""
    x = pairs.select("user_idx", "item_idx").distinct()
    return (
        x.withColumnRenamed("item_idx", "i")
        .join(x.withColumnRenamed("item_idx", "j"), "user_idx")
        .groupBy("i", "j")
        .agg(F.count("*").cast("double").alias("count"))
    )


def item_ids_and_gram(pairs: DataFrame, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue of `pairs` (sorted item_idx) and its dense Gram matrix, refusing a catalogue
    above `max_items` with the memory it would take."""
    items = np.sort(np.array([r[0] for r in pairs.select("item_idx").distinct().collect()], dtype=np.int64))
    if items.size > max_items:
        gib = items.size**2 * (8 * 4 + 24) / 2**30  # G, G + λI, P and B in float64, and up to n² collected cells
        raise RecsysError(
            f"EASE needs {items.size:,} x {items.size:,} dense matrices ({gib:.1f} GiB on the driver) for "
            f"{items.size:,} items, above ease.max_items={max_items:,}: raise it if the driver has the memory"
        )
    pos = np.full(int(items.max(initial=-1)) + 1, -1, dtype=np.int64)
    pos[items] = np.arange(items.size)
    cells = gram(pairs).toPandas()  # at most items² rows: bounded by the catalogue (max_items)
    g = np.zeros((items.size, items.size))
    g[pos[cells["i"].to_numpy()], pos[cells["j"].to_numpy()]] = cells["count"].to_numpy()
    return items, g


def weights(g: np.ndarray, lam: float) -> np.ndarray:
    """B = I - P·diag(1/diag(P)), P = (G + λI)⁻¹: the closed form, zero diagonal."""
    p = np.linalg.inv(g + lam * np.eye(len(g)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def ease_top_n(pairs: DataFrame, users: DataFrame, items: np.ndarray, b: np.ndarray, n: int) -> DataFrame:
    """(user_idx, rank, item_idx, score) for `users` (user_idx), scored on their items in `pairs`
    (which are also never recommended)."""
    spark = pairs.sparkSession
    bc = spark.sparkContext.broadcast((items, b.astype(np.float32)))
    histories = (
        pairs.select("user_idx", "item_idx")
        .distinct()
        .join(users.select("user_idx"), "user_idx")
        .groupBy("user_idx")
        .agg(F.collect_list("item_idx").alias("seen"))
    )
    rows = block_rows(items.size)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, vt = bc.value
        pos = np.full(int(ids.max(initial=-1)) + 1, -1, dtype=np.int64)
        pos[ids] = np.arange(ids.size)
        for batch in batches:
            for start in range(0, batch.num_rows, USERS_PER_SLICE):
                part = batch.slice(start, USERS_PER_SLICE)
                yield score_batch(_with_histories(part, pos, ids.size), ids, vt, pos, n, rows)

    return histories.mapInArrow(score, TOPN_SCHEMA)


def _with_histories(batch: pa.RecordBatch, pos: np.ndarray, n_items: int) -> pa.RecordBatch:
    """`batch` with `features`: each user's binary history over the catalogue (EASE's row of X)."""
    seen = batch.column("seen")
    lens = np.diff(seen.offsets.to_numpy())
    flat = pos[seen.flatten().to_numpy().astype(np.int64)]
    x = np.zeros((batch.num_rows, n_items), np.float32)
    x[np.repeat(np.arange(batch.num_rows), lens)[flat >= 0], flat[flat >= 0]] = 1.0
    offsets = pa.array(np.arange(0, (batch.num_rows + 1) * n_items, n_items, dtype=np.int32))
    features = pa.ListArray.from_arrays(offsets, pa.array(x.ravel()))
    return pa.RecordBatch.from_arrays(
        [batch.column("user_idx"), seen, features], names=["user_idx", "seen", "features"]
    )


def score_on(
    train: DataFrame, test: DataFrame, items: np.ndarray, b: np.ndarray, k: int
) -> tuple[DataFrame, DataFrame]:
    """(per-user metrics, lists) of EASE on the users with a relevant test item."""
    relevant = relevant_items(train, test)
    recs = ease_top_n(train, relevant.select("user_idx").distinct(), items, b, k)
    return per_user_metrics(recs, relevant, k), recs


def choose_lambda(
    tune_train: DataFrame, tune_val: DataFrame, lambdas: list[float], k: int, metric: str, max_items: int
) -> tuple[float, dict[float, float]]:
    """The λ with the best validation `metric`@k (ties: the smaller λ), and every λ's score."""
    items, g = item_ids_and_gram(tune_train, max_items)
    scores = {}
    for lam in lambdas:
        per_user, _ = score_on(tune_train, tune_val, items, weights(g, lam), k)
        scores[lam] = float(per_user.agg(F.avg(metric)).first()[0] or 0.0)
    best = max(scores, key=lambda lam: (scores[lam], -lam))
    return best, scores


def evaluate_ease(train: DataFrame, test: DataFrame, lam: float, k: int, max_items: int) -> dict[str, float]:
    """EASE's metrics@k on the test split, named as ALS's with an `ease_` prefix."""
    items, g = item_ids_and_gram(train, max_items)
    per_user, recs = score_on(train, test, items, weights(g, lam), k)
    recs = recs.persist()  # read by the metrics and the coverage
    try:
        return summarize(per_user, recs, items.size, k, prefix="ease_")
    finally:
        recs.unpersist()
