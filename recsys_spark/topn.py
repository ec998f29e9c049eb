"""Top-N items per user with the user's seen items excluded.

Item factors are small (items x rank) and broadcast to every task; user factors stream through
`mapInPandas` in Arrow batches, are scored in blocks by one matrix product, have their seen items
masked to -inf, and keep their best N by `argpartition`. One implementation serves evaluation,
the popularity baseline (a rank-1 model: every user [1], item [popularity]) and the recommend job,
whose popular fallback for users the model cannot score lives here too (`recommend_users`).
`top_n_naive` is the plain Spark way, kept as the reference the tests and benchmarks compare to.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from .model import TrainedModel

TOPN_SCHEMA = "user_idx int, rank int, item_idx int, score float"
# Users scored per matrix product: as many as keep a block's scores near this many floats (12 MB),
# so argpartition works from cache. In numpy alone that was 2-3x faster than 1024-user blocks on
# 50k items; inside Spark, where Arrow transfer and pandas work share the cores, top-N for 250k
# users x 50k items took 36.6 s against 38.3 s for 1024-user blocks of negated scores, side by
# side on the 5M-event bench data; `make bench` prints the block-size ratio at its own size.
BLOCK_CELLS = 3_000_000


def block_rows(n_items: int) -> int:
    return max(32, min(1024, BLOCK_CELLS // max(n_items, 1)))


def top_n(user_factors: DataFrame, item_factors: DataFrame, seen: DataFrame, n: int, block: int | None = None) -> DataFrame:
    """(user_idx, rank 1..n, item_idx, score) for every row of `user_factors` (id, features).

    `item_factors` (id, features) is collected and broadcast: it grows with the catalogue, not
    with users or events. `seen` (user_idx, item_idx) pairs are never recommended. `block`
    (users per matrix product) defaults to `block_rows` of the catalogue size.
    """
    items = item_factors.select("id", "features").toPandas()
    ids = items["id"].to_numpy(dtype=np.int64)
    vt = np.ascontiguousarray(np.vstack(items["features"].to_numpy()).astype(np.float32).T) if len(items) else np.zeros((1, 0), np.float32)
    spark = user_factors.sparkSession
    bc = spark.sparkContext.broadcast((ids, vt))
    rows = block or block_rows(ids.size)
    seen_lists = seen.groupBy("user_idx").agg(F.collect_list("item_idx").alias("seen"))
    users = user_factors.select(F.col("id").alias("user_idx"), "features").join(seen_lists, "user_idx", "left")

    def score(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        item_ids, v = bc.value
        pos = np.full(int(item_ids.max()) + 1 if item_ids.size else 1, -1, dtype=np.int64)
        pos[item_ids] = np.arange(item_ids.size)
        for pdf in batches:
            yield _score_batch(pdf, item_ids, v, pos, n, rows)

    return users.mapInPandas(score, TOPN_SCHEMA)


def _score_batch(batch: pd.DataFrame, item_ids: np.ndarray, vt: np.ndarray, pos: np.ndarray, n: int, rows: int) -> pd.DataFrame:
    """Top-k of one Arrow batch: seen items as (row, column) pairs once, then blocks of `rows` users."""
    k = min(n, item_ids.size)
    if k == 0 or batch.empty:
        return pd.DataFrame({"user_idx": [], "rank": [], "item_idx": [], "score": []}).astype({"user_idx": "int32", "rank": "int32", "item_idx": "int32", "score": "float32"})
    u = np.vstack(batch["features"].to_numpy()).astype(np.float32)
    seen = batch["seen"].map(lambda s: s if s is not None else np.empty(0, np.int64))
    lens = seen.map(len).to_numpy()
    flat = np.concatenate(seen.to_numpy()).astype(np.int64) if lens.sum() else np.empty(0, np.int64)
    seen_rows = np.repeat(np.arange(len(batch)), lens)  # sorted: a block's pairs are one slice
    cols = np.full(flat.size, -1)
    inside = flat < pos.size
    cols[inside] = pos[flat[inside]]
    seen_rows, cols = seen_rows[cols >= 0], cols[cols >= 0]
    parts, tops = [], []
    for start in range(0, len(batch), rows):
        scores = u[start : start + rows] @ vt
        lo, hi = np.searchsorted(seen_rows, [start, start + rows])
        scores[seen_rows[lo:hi] - start, cols[lo:hi]] = -np.inf
        part, top = top_k_rows(scores, item_ids, k)
        parts.append(part)
        tops.append(top)
    part, top = np.concatenate(parts), np.concatenate(tops)
    keep = np.isfinite(top).ravel()
    return pd.DataFrame(
        {
            "user_idx": np.repeat(batch["user_idx"].to_numpy(), k)[keep].astype(np.int32),
            "rank": np.tile(np.arange(1, k + 1), len(batch))[keep].astype(np.int32),
            "item_idx": item_ids[part].ravel()[keep].astype(np.int32),
            "score": top.ravel()[keep].astype(np.float32),
        }
    )


def top_k_rows(scores: np.ndarray, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, scores) of each row's k best, by score descending then item id: every item tied
    with the k-th score is a candidate, so which of them is kept never depends on argpartition's
    arbitrary choice (the evaluated baseline and the served fallback agree on ties)."""
    n = scores.shape[1]
    # kth from the end: measured faster than partitioning the negated scores.
    kth = np.partition(scores, n - k, axis=1)[:, n - k] if k < n else np.full(len(scores), -np.inf, np.float32)
    r, c = np.nonzero(scores >= kth[:, None])  # >= k per row; more only where there are ties at the k-th
    s = scores[r, c]
    order = np.lexsort((item_ids[c], -s, r))
    r, c, s = r[order], c[order], s[order]
    first = np.searchsorted(r, np.arange(len(scores)))
    take = np.arange(r.size) - first[r] < k
    return c[take].reshape(-1, k), s[take].reshape(-1, k)


def popularity(interactions: DataFrame) -> DataFrame:
    """(item_idx, popularity): distinct users per item in `interactions`."""
    return interactions.groupBy("item_idx").agg(F.countDistinct("user_idx").cast("float").alias("popularity"))


def top_n_popular(users: DataFrame, pop: DataFrame, seen: DataFrame, n: int) -> DataFrame:
    """The most popular items each user in `users` (user_idx) has not seen."""
    user_factors = users.select(F.col("user_idx").alias("id"), F.array(F.lit(1.0).cast("float")).alias("features"))
    item_factors = pop.select(F.col("item_idx").alias("id"), F.array(F.col("popularity").cast("float")).alias("features"))
    return top_n(user_factors, item_factors, seen, n)


def als_top_n(model: ALSModel, users: DataFrame, seen: DataFrame, n: int) -> DataFrame:
    """Top-n for `users` (user_idx) from a fitted model, seen pairs excluded."""
    factors = model.userFactors.join(users.select(F.col("user_idx").alias("id")), "id")
    return top_n(factors, model.itemFactors, seen, n)


def recommend_users(m: TrainedModel, wanted: DataFrame | None, n: int) -> DataFrame:
    """(user_id, rank, item_id, score, source) for `wanted` (user_id), or every user the model knows.

    Users with ALS factors get their top-n, seen items excluded (`source` als). Users the model
    cannot score get the most popular items (`source` popular), ties broken by item index: those
    in the id maps without factors (a model not refitted on all data) with their seen items
    excluded, unknown users the n most popular of all.
    """
    spark = m.users.sparkSession
    with_factors = m.users.join(m.als.userFactors.select(F.col("id").alias("user_idx")), "user_idx")
    if wanted is not None:
        served = wanted.join(with_factors, "user_id")
        fallback = wanted.join(with_factors, "user_id", "left_anti")
    else:
        served, fallback = with_factors, m.users.join(with_factors, "user_id", "left_anti").select("user_id")
    named = lambda recs, source: recs.join(m.users, "user_idx").join(m.items, "item_idx").select(
        "user_id", "rank", "item_id", "score", F.lit(source).alias("source"))
    als = named(als_top_n(m.als, served.select("user_idx"), m.seen, n), "als")
    known = named(top_n_popular(fallback.join(m.users, "user_id").select("user_idx"), m.popular, m.seen, n), "popular")
    best = m.popular.join(m.items, "item_idx").orderBy(F.desc("popularity"), "item_idx").limit(n).collect()  # n rows
    top = spark.createDataFrame(
        [(i, r["item_id"], float(r["popularity"])) for i, r in enumerate(best, 1)], "rank int, item_id string, score float"
    )
    unknown = fallback.join(m.users, "user_id", "left_anti").crossJoin(F.broadcast(top)).select(
        "user_id", "rank", "item_id", "score", F.lit("popular").alias("source"))
    return als.unionByName(known).unionByName(unknown)


def top_n_naive(als_model, seen: DataFrame, n: int) -> DataFrame:
    """Reference: recommendForAllUsers(n + max seen), anti-join seen pairs, re-rank."""
    max_seen = seen.groupBy("user_idx").count().agg(F.max("count")).first()[0] or 0
    recs = als_model.recommendForAllUsers(n + max_seen)
    flat = recs.select(F.col("user_idx"), F.posexplode("recommendations").alias("_p", "rec")).select(
        "user_idx", F.col("rec.item_idx").alias("item_idx"), F.col("rec.rating").alias("score")
    )
    kept = flat.join(seen.select("user_idx", "item_idx"), ["user_idx", "item_idx"], "left_anti")
    w = Window.partitionBy("user_idx").orderBy(F.desc("score"), "item_idx")
    return kept.withColumn("rank", F.row_number().over(w)).where(F.col("rank") <= n).select(
        "user_idx", F.col("rank").cast("int"), "item_idx", F.col("score").cast("float")
    )
