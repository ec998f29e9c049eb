"""Top-N items per user with the user's seen items excluded.

Item factors are small (items x rank) and broadcast to every task; user factors stream through
`mapInArrow` in Arrow batches, are scored in blocks by one matrix product, have their seen items
masked to -inf, and keep their best N (`kernels.top_k_rows`: chunk maxima first, ties by item
id). One implementation serves evaluation, the popularity baseline (a rank-1 model: every user
[1], item [popularity]) and the recommend job, whose popular fallback for users the model
cannot score lives here too (`recommend_users`).
`top_n_naive` is the plain Spark way, kept as the reference the tests and benchmarks compare to.
The per-batch numpy work is in `kernels`, which the served model shares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.names import ALS, EASE, POPULAR, UNKNOWN_USER
from recsys_spark.recs import ease
from recsys_spark.recs.filters import Filters, with_mask
from recsys_spark.recs.interactions import build_id_map
from recsys_spark.recs.kernels import (
    BECAUSE_TYPE,
    TOPN_SCHEMA,
    Explain,
    ListRules,
    block_rows,
    explain_for,
    indexed,
    score_batch,
)
from recsys_spark.recs.model import Factors, TrainedModel


@dataclass
class ItemMatrix:
    """Item vectors on the driver: `ids` (item_idx) and one row of `vectors` per id. Collected
    once, one matrix serves a fold-in and the top-N after it (recs/foldin.py)."""

    ids: np.ndarray
    vectors: np.ndarray

    @classmethod
    def of(cls, df: DataFrame, id_col: str = "id", vec_col: str = "features") -> ItemMatrix:
        """A table's vectors (default: a factor table, id and features); ids ascending, as `take` needs."""
        return cls.from_pandas(df.select(id_col, vec_col).toPandas(), id_col, vec_col)  # grows with the catalogue

    @classmethod
    def from_pandas(cls, pdf: pd.DataFrame, id_col: str, vec_col: str) -> ItemMatrix:
        ids = pdf[id_col].to_numpy(np.int64)
        order = np.argsort(ids)
        vectors = (
            np.vstack(pdf[vec_col].to_numpy()).astype(np.float32)[order] if len(pdf) else np.zeros((0, 1), np.float32)
        )
        return cls(ids[order], vectors)

    def take(self, ids: np.ndarray, dim: int | None = None) -> np.ndarray:
        """Rows for `ids` (zeros for ids without a vector)."""
        out = np.zeros((len(ids), dim or self.vectors.shape[1]), np.float32)
        pos = np.searchsorted(self.ids, ids)
        hit = (
            (pos < self.ids.size) & (self.ids[np.minimum(pos, max(self.ids.size - 1, 0))] == ids)
            if self.ids.size
            else np.zeros(len(ids), bool)
        )
        out[hit] = self.vectors[pos[hit]]
        return out

    def columns(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids as int64, the vectors as float32 columns: dim x items), the layout the kernels score."""
        return self.ids.astype(np.int64), np.ascontiguousarray(self.vectors.astype(np.float32).T)


def top_n(
    user_factors: DataFrame,
    item_factors: DataFrame | ItemMatrix,
    seen: DataFrame,
    n: int,
    block: int | None = None,
    explain: Explain | None = None,
    mask: DataFrame | None = None,
    rules: ListRules | None = None,
) -> DataFrame:
    """(user_idx, rank 1..n, item_idx, score) for every row of `user_factors` (id, features).

    `item_factors` (id, features) is collected (unless it is already an ItemMatrix) and broadcast:
    it grows with the catalogue, not with users or events. `seen` (user_idx, item_idx) pairs are
    never recommended. `block` (users per matrix product) defaults to `block_rows` of the catalogue
    size. With `explain`, `seen` also carries `weight` (the rating the model was fitted on, null for
    a pair left out of the fit) and every row gets `because` (see `kernels.explain_block`), in the
    same pass. `mask` (user_idx, item_idx) pairs are never recommended instead of `seen` (which
    stays the history `because` reads); `rules` block items and cap values for every user
    (recs/filters.py).
    """
    ids, vt = (item_factors if isinstance(item_factors, ItemMatrix) else ItemMatrix.of(item_factors)).columns()
    spark = user_factors.sparkSession
    bc = spark.sparkContext.broadcast((ids, vt, explain, rules))
    rows = block or block_rows(ids.size)
    if explain is None:
        seen_lists = seen.groupBy("user_idx").agg(F.collect_list("item_idx").alias("seen"))
    else:
        history = seen.groupBy("user_idx").agg(
            F.collect_list(F.struct("item_idx", F.col("weight").cast("double").alias("weight"))).alias("_h")
        )
        seen_lists = history.select("user_idx", F.col("_h.item_idx").alias("seen"), F.col("_h.weight").alias("weights"))
    users = with_mask(
        user_factors.select(F.col("id").alias("user_idx"), "features").join(seen_lists, "user_idx", "left"), mask
    )

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_ids, v, how, only = bc.value
        pos = np.full(int(item_ids.max()) + 1 if item_ids.size else 1, -1, dtype=np.int64)
        pos[item_ids] = np.arange(item_ids.size)
        gram = v.astype(np.float64) @ v.T.astype(np.float64) if how is not None else None  # Y'Y, once per task
        for batch in batches:
            yield score_batch(batch, item_ids, v, pos, n, rows, how, gram, only)

    schema = TOPN_SCHEMA + (f", because {BECAUSE_TYPE}" if explain else "")
    return users.mapInArrow(score, schema)


def popularity(interactions: DataFrame) -> DataFrame:
    """(item_idx, popularity): distinct users per item in `interactions`."""
    return interactions.groupBy("item_idx").agg(F.countDistinct("user_idx").cast("float").alias("popularity"))


def top_n_popular(
    users: DataFrame,
    pop: DataFrame,
    seen: DataFrame,
    n: int,
    mask: DataFrame | None = None,
    rules: ListRules | None = None,
) -> DataFrame:
    """The most popular items each user in `users` (user_idx) has not seen (`mask`, `rules`: see top_n)."""
    user_factors = users.select(F.col("user_idx").alias("id"), F.array(F.lit(1.0).cast("float")).alias("features"))
    item_factors = pop.select(
        F.col("item_idx").alias("id"), F.array(F.col("popularity").cast("float")).alias("features")
    )
    return top_n(user_factors, item_factors, seen, n, mask=mask, rules=rules)


def als_top_n(
    model: ALSModel | Factors,
    users: DataFrame,
    seen: DataFrame,
    n: int,
    explain: Explain | None = None,
    mask: DataFrame | None = None,
    rules: ListRules | None = None,
) -> DataFrame:
    """Top-n for `users` (user_idx) from a fitted model, seen pairs excluded (the rest: see top_n)."""
    factors = model.userFactors.join(users.select(F.col("user_idx").alias("id")), "id")
    return top_n(factors, model.itemFactors, seen, n, explain=explain, mask=mask, rules=rules)


def explainer(m: TrainedModel, names: DataFrame | None = None) -> Explain | None:
    """The model's Explain, with display names from `names` (item_id, name); None for a model
    saved before explanations (its seen pairs carry no fit weights)."""
    if "weight" not in m.seen.columns:
        return None
    items = m.items if names is None else m.items.join(names.select("item_id", "name"), "item_id", "left")
    labels = items.select(
        "item_idx", "item_id", F.col("name") if names is not None else F.lit(None).cast("string").alias("name")
    ).toPandas()
    idx = labels["item_idx"].to_numpy()  # catalogue-sized
    return explain_for(m.config, indexed(idx, labels["item_id"].to_numpy()), indexed(idx, labels["name"].to_numpy()))


def recommend_users(
    m: TrainedModel, wanted: DataFrame | None, n: int, names: DataFrame | None = None, filters: Filters | None = None
) -> DataFrame:
    """(user_id, rank, item_id, score, source, because, why) for `wanted` (user_id), or every user
    the model knows.

    Users the serving family can score (ALS: users with factors; EASE: users with a history) get
    their top-n, seen items excluded (`source` als or ease), each row with the user's history items
    that contributed most to its score (`because`; names from `names`). Users the model cannot
    score get `popular_lists`. Every list obeys `filters` (recs/filters.py).
    """
    scoreable = (
        m.seen.select("user_idx") if m.ease is not None else m.als.userFactors.select(F.col("id").alias("user_idx"))
    )
    with_factors = m.users.join(scoreable.distinct(), "user_idx")
    if wanted is not None:
        served = wanted.join(with_factors, "user_id")
        fallback = wanted.join(with_factors, "user_id", "left_anti")
    else:
        served, fallback = with_factors, m.users.join(with_factors, "user_id", "left_anti").select("user_id")
    explain = explainer(m, names)
    rules, mask = (filters.rules, filters.pairs(m.users, m.seen)) if filters else (None, None)
    if m.ease is not None:
        lists = ease.ease_top_n(m.seen, served.select("user_idx"), *ease.from_frame(m.ease), n, explain, mask, rules)
    else:
        lists = als_top_n(m.als, served.select("user_idx"), m.seen, n, explain, mask, rules)
    own = named_lists(lists, m.users, m.items, EASE if m.ease is not None else ALS)
    return own.unionByName(popular_lists(m, fallback, n, filters))


def named_lists(lists: DataFrame, users: DataFrame, items: DataFrame, source: str) -> DataFrame:
    """recommend_users' columns (user_id, rank, item_id, score, source, because, why) of a model's
    top-N `lists` (user_idx, rank, item_idx, score[, because]), with the id maps `users` and `items`."""
    because = F.col("because") if "because" in lists.columns else F.lit(None).cast(BECAUSE_TYPE)
    return (
        lists.join(users, "user_idx")
        .join(items, "item_idx")
        .select("user_id", "rank", "item_id", "score", F.lit(source).alias("source"), because.alias("because"))
        .withColumn("why", why(F.col("source"), F.col("because")))
    )


def popular_lists(m: TrainedModel, users: DataFrame, n: int, filters: Filters | None = None) -> DataFrame:
    """The most popular items for `users` (user_id), ties broken by item index, in recommend_users'
    columns: users in the id maps without their seen items (`source` popular), users the model has
    never seen the n most popular of all (`source` popular_unknown_user). The score is the item's
    popularity share: the fraction of the model's users who interacted with it (0-1). The fallback
    for users the model cannot score, and the control arm's list; it obeys `filters` too."""
    rules = filters.rules if filters else None
    nothing = m.seen.where(F.lit(False))  # a user the model never saw has seen nothing
    known = (
        top_n_popular(
            users.join(m.users, "user_id").select("user_idx"),
            m.popular,
            m.seen,
            n,
            filters.pairs(m.users, m.seen) if filters else None,
            rules,
        )
        .join(m.users, "user_idx")
        .join(m.items, "item_idx")
        .select("user_id", "rank", "item_id", "score", F.lit(POPULAR).alias("source"))
    )
    strangers = users.join(m.users, "user_id", "left_anti").select("user_id")
    if filters is None or filters.mask is None:  # one list for every stranger: n rows, broadcast
        spark = m.users.sparkSession
        best = top_n_popular(spark.createDataFrame([(0,)], "user_idx int"), m.popular, nothing, n, rules=rules)
        rows = best.join(m.items, "item_idx").select("rank", "item_id", "score").collect()  # n rows
        unknown = strangers.crossJoin(F.broadcast(spark.createDataFrame(rows, "rank int, item_id string, score float")))
    else:  # their own exclusions too: numbered for this run, scored per user
        ids = build_id_map(strangers, "user_id", "user_idx")
        wanted = ids.select("user_idx")
        unknown = (
            top_n_popular(wanted, m.popular, nothing, n, filters.pairs(ids, nothing), rules)
            .join(ids, "user_idx")
            .join(m.items, "item_idx")
        )
    unknown = unknown.select("user_id", "rank", "item_id", "score", F.lit(UNKNOWN_USER).alias("source"))
    no_reason = F.lit(None).cast(BECAUSE_TYPE)
    share = F.lit(1.0 / max(m.users.count(), 1))
    return (
        known.unionByName(unknown)
        .withColumn("score", (F.col("score") * share).cast("float"))
        .withColumn("because", no_reason)
        .withColumn("why", why(F.col("source"), F.col("because")))
    )


def why(source: Column, because: Column) -> Column:
    """The explanation as a sentence: "because of <name> (41%), ..." or what the popular fallback means."""

    def part(b):
        return F.format_string("%s (%d%%)", F.coalesce(b["name"], b["item_id"]), F.round(b["share"] * 100).cast("int"))

    return (
        F.when(source == POPULAR, F.lit("popular with all users: the model has no factors for this user"))
        .when(source == UNKNOWN_USER, F.lit("popular with all users: the model has never seen this user"))
        .when(F.size(because) > 0, F.concat(F.lit("because of "), F.array_join(F.transform(because, part), ", ")))
    )


def top_n_naive(als_model, seen: DataFrame, n: int) -> DataFrame:
    """Reference: recommendForAllUsers(n + max seen), anti-join seen pairs, re-rank."""
    max_seen = seen.groupBy("user_idx").count().agg(F.max("count")).first()[0] or 0
    recs = als_model.recommendForAllUsers(n + max_seen)
    flat = recs.select(F.col("user_idx"), F.posexplode("recommendations").alias("_p", "rec")).select(
        "user_idx", F.col("rec.item_idx").alias("item_idx"), F.col("rec.rating").alias("score")
    )
    kept = flat.join(seen.select("user_idx", "item_idx"), ["user_idx", "item_idx"], "left_anti")
    w = Window.partitionBy("user_idx").orderBy(F.desc("score"), "item_idx")
    return (
        kept.withColumn("rank", F.row_number().over(w))
        .where(F.col("rank") <= n)
        .select("user_idx", F.col("rank").cast("int"), "item_idx", F.col("score").cast("float"))
    )
