"""EASE (Steck, WWW 2019), a closed-form item-item model: the second family beside ALS.

With X the binary users x items matrix of training pairs, G = XᵀX (co-occurrence counts),
P = (G + λI)⁻¹ (G + Λ with EDLAE's dropout, below) and B = I - P·diag(1/diag(P)) (so diag(B) = 0),
a user's score for item j is Σ over the user's items i of B[i, j]. G is aggregated by Spark from
the pairs (never a dense users x items matrix); B is made on the driver from G's Cholesky factor,
in place, for catalogues up to `max_items` (about n² x 24 bytes at the peak: G and B in float64,
and two tasks' int32 counts or B's float32 copy); top-N streams users through `mapInArrow` with B
broadcast, using the same blocked kernel as ALS (a user's row of X, sparse, stands for ALS's user
factors and B's columns for the item factors), seen items excluded and ties broken as for ALS. λ
(and EDLAE's dropout, below) is chosen on the validation users ALS's trials are scored on; a served
EASE model stores B in ALS's item-factor layout (`weights_frame`).

EDLAE (Steck, NeurIPS 2020: "Autoencoders that don't overfit towards the identity") trains the same
model under dropout p of the input; in closed form that adds p/(1-p)·diag(G) to the diagonal beside
λ, so a popular item's weights are shrunk more than a rare one's. p = 0 is EASE.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from scipy.linalg import lapack

from recsys_spark.errors import RecsysError
from recsys_spark.recs.evaluation import per_user_metrics, relevant_items, summarize
from recsys_spark.recs.filters import with_mask
from recsys_spark.recs.kernels import (
    BECAUSE_TYPE,
    TOPN_SCHEMA,
    Explain,
    ListRules,
    block_rows,
    score_batch,
    with_unit_weights,
)
from recsys_spark.recs.tuning import TuningData, rank_metrics


@dataclass(frozen=True)
class Setting:
    """EASE's hyperparameters: λ, the L2 weight on every item, and EDLAE's dropout p in [0, 1)."""

    lam: float
    dropout: float = 0.0

    @property
    def label(self) -> str:
        """How summaries name it: the λ alone for plain EASE (`500`), else `500 (dropout 0.1)`."""
        return f"{self.lam:g}" + (f" (dropout {self.dropout:g})" if self.dropout else "")

    def saved(self) -> dict[str, float]:
        """How a saved model's config.yaml, the summary and MLflow name it (read back by of_model)."""
        return {"ease_lambda": self.lam, "ease_dropout": self.dropout}

    @classmethod
    def of_model(cls, config: dict) -> Setting:
        """The setting a saved EASE model's config.yaml records (no `ease_dropout`: saved before
        EDLAE, plain EASE)."""
        return cls(float(config["ease_lambda"]), float(config.get("ease_dropout", 0.0)))


class Weights(NamedTuple):
    """A fitted EASE model: the catalogue (sorted item_idx) and B over it."""

    items: np.ndarray
    b: np.ndarray


USERS_PER_SLICE = 1024  # users per score_batch call (sparse histories; its row blocks bound the scores)


GRAM_CELLS = 16_000_000  # outer-product cells counted per np.bincount call (128 MB of int64 indices)
GRAM_RECORD = 4_000_000  # Gram cells per emitted record (16 MB of int32)


def gram(pairs: DataFrame, items: np.ndarray) -> np.ndarray:
    """G = XᵀX over `items` (sorted item_idx; float64, n x n): co-occurrence counts of the binary
    pairs, never a dense users x items matrix. Each task counts the item pairs of its users'
    histories (Σ d_u² cells, as a self-join would make rows) with np.bincount into one n x n int32
    array and sends it in row blocks, which the driver sums (`python -m bench.gram`: 2.0 s
    against 20.2 s for a self-join and aggregation of Spark rows on Online Retail's 48M cells).
    A task holds about n² x 12 bytes while it counts (0.16 GB at 3,684 items)."""
    spark = pairs.sparkSession
    n = items.size
    pos = np.full(int(items.max(initial=-1)) + 1, -1, dtype=np.int64)
    pos[items] = np.arange(n)
    bc = spark.sparkContext.broadcast(pos)
    histories = (
        pairs.select("user_idx", "item_idx")
        .distinct()
        .groupBy("user_idx")
        .agg(F.collect_list("item_idx").alias("items"))
        .coalesce(spark.sparkContext.defaultParallelism)  # one n x n count per task
    )
    rows = max(1, GRAM_RECORD // max(n, 1))

    def count(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        where = bc.value
        acc = np.zeros(n * n, np.int32)
        for batch in batches:
            lists = batch.column("items")
            offsets, cols = lists.offsets.to_numpy(), where[lists.values.to_numpy()]
            sizes = np.diff(offsets).astype(np.int64) ** 2
            start = 0
            while start < sizes.size:  # users in chunks of about GRAM_CELLS outer-product cells
                stop = start + max(1, int(np.searchsorted(np.cumsum(sizes[start:]), GRAM_CELLS)))
                flat = [
                    (cols[a:b, None] * n + cols[None, a:b]).ravel()
                    for a, b in zip(offsets[start:stop], offsets[start + 1 : stop + 1], strict=True)
                ]
                acc += np.bincount(np.concatenate(flat), minlength=n * n).astype(np.int32)
                start = stop
        for r in range(0, n, rows):
            block = acc[r * n : min(r + rows, n) * n]
            yield pa.RecordBatch.from_pydict({"row": [r], "counts": [block.tobytes()]})

    g = np.zeros((n, n))
    for rec in histories.mapInArrow(count, "row long, counts binary").collect():  # tasks x n² x 4 bytes
        block = np.frombuffer(rec["counts"], np.int32).reshape(-1, n)
        g[rec["row"] : rec["row"] + block.shape[0]] += block
    return g


def check_catalogue(n: int, max_items: int) -> None:
    """Refuse a catalogue of `n` items above `max_items`, with the memory EASE would take."""
    if n > max_items:
        # G and B (made in place) in float64, and two tasks' int32 counts or B's float32 copy
        gib = n**2 * (8 + 8 + 8) / 2**30
        raise RecsysError(
            f"EASE needs {n:,} x {n:,} dense matrices ({gib:.1f} GiB on the driver) for "
            f"{n:,} items, above ease.max_items={max_items:,}: raise it if the driver has the memory"
        )


def item_ids_and_gram(pairs: DataFrame, max_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The catalogue of `pairs` (sorted item_idx) and its dense Gram matrix, refusing a catalogue
    above `max_items` with the memory it would take."""
    items = np.sort(np.array([r[0] for r in pairs.select("item_idx").distinct().collect()], dtype=np.int64))
    check_catalogue(items.size, max_items)
    return items, gram(pairs, items)


def weights(g: np.ndarray, setting: Setting) -> np.ndarray:
    """B = I - P·diag(1/diag(P)), P = (G + Λ)⁻¹ with Λ = λI + p/(1-p)·diag(G) (p: EDLAE's dropout):
    the closed form, zero diagonal. G + Λ is symmetric positive definite (G = XᵀX, λ > 0), so P comes
    from its Cholesky factor, in place (LAPACK potrf then potri: about n³ flops and one n x n float64
    matrix, where a general inverse takes 2.7n³ and four; see bench.gram)."""
    if not len(g):
        return np.zeros((0, 0))
    a = np.array(g, dtype=np.float64, order="F")
    a[np.diag_indices_from(a)] /= 1.0 - setting.dropout  # G_ii + p/(1-p)·G_ii
    a[np.diag_indices_from(a)] += setting.lam
    c, info = lapack.dpotrf(a, lower=True, overwrite_a=True, clean=False)
    if info == 0:
        c, info = lapack.dpotri(c, lower=True, overwrite_c=True)
    if info != 0:  # only from non-finite or negative counts: XᵀX + Λ is positive definite
        raise RecsysError(
            f"EASE: G + Λ (λ={setting.lam}, dropout={setting.dropout}) is not positive definite "
            f"(LAPACK info {info}); check the pairs"
        )
    _mirror_lower(c)
    c /= -np.diag(c)[None, :].copy()
    np.fill_diagonal(c, 0.0)
    return c


def _mirror_lower(p: np.ndarray, block: int = 512) -> None:
    """Copy the lower triangle (potri's output) onto the upper one, a block of rows at a time."""
    for r0 in range(0, len(p), block):
        r1 = min(r0 + block, len(p))
        low = np.tril(p[r0:r1, r0:r1])
        p[r0:r1, r0:r1] = low + np.tril(low, -1).T
        p[r0:r1, r1:] = p[r1:, r0:r1].T


def ease_top_n(
    pairs: DataFrame,
    users: DataFrame,
    items: np.ndarray,
    b: np.ndarray,
    n: int,
    explain: Explain | None = None,
    mask: DataFrame | None = None,
    rules: ListRules | None = None,
) -> DataFrame:
    """(user_idx, rank, item_idx, score) for `users` (user_idx), scored on their items in `pairs`
    (which are also never recommended, unless `mask` says what is instead; `rules`: see
    topn.top_n). With `explain` (ease=True) every row gets `because`."""
    spark = pairs.sparkSession
    # Row-major: a sparse X times a column-major B would copy B for every block of users.
    bc = spark.sparkContext.broadcast((items, np.ascontiguousarray(b, dtype=np.float32), explain, rules))
    histories = (
        pairs.select("user_idx", "item_idx")
        .distinct()
        .join(users.select("user_idx"), "user_idx")
        .groupBy("user_idx")
        .agg(F.collect_list("item_idx").alias("seen"))
    )
    histories = with_mask(histories, mask)
    rows = block_rows(items.size)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        ids, vt, how, only = bc.value
        pos = np.full(int(ids.max(initial=-1)) + 1, -1, dtype=np.int64)
        pos[ids] = np.arange(ids.size)
        for batch in batches:
            for start in range(0, batch.num_rows, USERS_PER_SLICE):
                part = with_unit_weights(batch.slice(start, USERS_PER_SLICE))
                yield score_batch(part, ids, vt, pos, n, rows, how, rules=only)

    return histories.mapInArrow(score, TOPN_SCHEMA + (f", because {BECAUSE_TYPE}" if explain else ""))


def validation_scores(
    data: TuningData, settings: list[Setting], k: int, metric: str, max_items: int
) -> dict[Setting, float]:
    """Each setting's mean `metric`@k on the validation users ALS's trials are scored on (`data`),
    with the tuning side's Gram: one inverse per setting and the scores on the driver (the sample is
    bounded by tune.validation_users)."""
    items, g = item_ids_and_gram(data.pairs, max_items)
    users = data.users["user_idx"].to_numpy(np.int64)
    row = pd.Series(np.arange(users.size), index=users)
    col = pd.Series(np.arange(items.size), index=items)
    r, c = row.reindex(data.seen["user_idx"]).to_numpy(), col.reindex(data.seen["item_idx"]).to_numpy()
    ok = ~np.isnan(r) & ~np.isnan(c)
    x = np.zeros((users.size, items.size), np.float32)
    x[r[ok].astype(int), c[ok].astype(int)] = 1.0
    scores = {}
    for setting in settings:
        b = weights(g, setting).astype(np.float32)  # rank_metrics scores x @ v.T: v = Bᵀ
        per_user = rank_metrics(users, users, x, items, np.ascontiguousarray(b.T), data.seen, data.relevant, k)
        scores[setting] = float(np.mean(per_user[metric])) if users.size else 0.0
    return scores


def best_setting(scores: dict[Setting, float]) -> Setting:
    """The setting with the best validation score (ties: the smaller dropout, then the smaller λ)."""
    return max(scores, key=lambda s: (scores[s], -s.dropout, -s.lam))


@dataclass
class EaseEvaluation:
    metrics: dict[str, float]  # ALS's metric names with an `ease_` prefix
    per_user: DataFrame  # user_idx and the per-user metrics (persisted: release with unpersist)
    ruled: dict[str, float] = field(default_factory=dict)  # ease_rules_<metric>: the same users under the rules


def evaluate_ease(
    train: DataFrame, test: DataFrame, setting: Setting, k: int, max_items: int, rules: ListRules | None = None
) -> EaseEvaluation:
    """EASE's metrics@k on the test split (the users with a relevant test item), and per user; with
    `rules` (recommend's item rules) the same users' lists under them too, as training.evaluate
    does for ALS."""
    keep = StorageLevel.MEMORY_AND_DISK
    items, g = item_ids_and_gram(train, max_items)
    b = weights(g, setting)
    relevant = relevant_items(train, test).persist(keep)
    users = relevant.select("user_idx").distinct()
    recs = ease_top_n(train, users, items, b, k).persist(keep)
    per_user = per_user_metrics(recs, relevant, k).persist(keep)
    under = ease_top_n(train, users, items, b, k, rules=rules).persist(keep) if rules is not None else None
    try:
        ruled = {}
        if under is not None:
            ruled = summarize(per_user_metrics(under, relevant, k), under, items.size, k, prefix="ease_rules_")
        return EaseEvaluation(summarize(per_user, recs, items.size, k, prefix="ease_"), per_user, ruled)
    finally:
        for df in (recs, relevant, under):
            if df is not None:
                df.unpersist()


def weights_frame(spark: SparkSession, model: Weights) -> DataFrame:
    """B as a served model stores it, in ALS's item-factor layout: (id, features) with item j's
    features = B[:, j], so a user's score for j is their binary history · features."""
    items, b = model
    table = pa.table(
        {
            "id": pa.array(items.astype(np.int32)),
            "features": pa.ListArray.from_arrays(
                pa.array(np.arange(0, (items.size + 1) * items.size, items.size, dtype=np.int32)),
                pa.array(np.ascontiguousarray(b.T, dtype=np.float32).ravel()),
            ),
        }
    )
    return spark.createDataFrame(table)


def from_frame(frame: DataFrame) -> Weights:
    """(item_idx, B) of a stored `weights_frame` (catalogue-sized: bounded by ease.max_items)."""
    rows = frame.select("id", "features").toPandas().sort_values("id")
    items = rows["id"].to_numpy(np.int64)
    b = np.vstack(rows["features"].to_numpy()).T if len(rows) else np.zeros((0, 0))
    return Weights(items, np.ascontiguousarray(b, dtype=np.float32))


def rekeyed(model: Weights, own: DataFrame, other: DataFrame) -> Weights:
    """A stored B under another run's item_idx (`own`, `other`: item_id, item_idx), joined by
    item_id; items that run does not have are dropped (their rows and columns)."""
    mapping = (
        own.withColumnRenamed("item_idx", "mine").join(other, "item_id").select("mine", "item_idx").toPandas()
    )  # catalogue-sized
    at = pd.Series(np.arange(model.items.size), index=model.items).reindex(mapping["mine"]).to_numpy()
    ok = ~np.isnan(at)
    keep, new_ids = at[ok].astype(int), mapping["item_idx"].to_numpy(np.int64)[ok]
    order = np.argsort(new_ids)
    keep, new_ids = keep[order], new_ids[order]
    return Weights(new_ids, model.b[np.ix_(keep, keep)])


def fit(pairs: DataFrame, setting: Setting, max_items: int) -> Weights:
    """EASE fitted on `pairs` with `setting`."""
    items, g = item_ids_and_gram(pairs, max_items)
    return Weights(items, weights(g, setting))
