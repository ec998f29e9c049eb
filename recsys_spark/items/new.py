"""New items from day one: factors from text for items ALS cannot place yet, the lists that rank
them, items similar to each item, and the protocol that measures whether text helps.

Item-level arrays (embeddings, factors) are handled with numpy on the driver: they grow with the
catalogue, as the item factors top-N broadcasts do, never with users or events. Everything per
user stays in Spark (`top_n`, `evaluation.per_user_metrics`).

**Choosing the map** (`choose_map`): warm items (ALS factors and text) are split by a seeded draw;
`new_items.validation_fraction` of them pretend to be new. Each candidate (ridge for every
`new_items.reg_params`, kNN for every `new_items.neighbours`) is fitted on the rest and scored by
NDCG@k of ranking the pretend-new items for the users who interacted with them. The test side of
any evaluation is never used for it.

**The protocol** (`evaluate_new_items`, `recsys-spark evaluate-new-items`): a seeded fraction of
items is held out whole (none of their pairs reach ALS); ALS is fitted on the rest; the map is
chosen as above on that model; then every user ALS knows who interacted with held-out items gets
all held-out items ranked, scored against the ones they chose. Beside the maps, the same ranking by
`random` (a seeded order), `text_popularity` (mean popularity of an item's nearest warm items by
text, one order for everyone), `content` (cosine of the user's mean warm-item embedding with the
item's) and, as a control, the maps with the held-out items' texts shuffled among them, which must
fall to random if the text carries the signal.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.recommendation import ALSModel
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import ALSConfig, NewItemsConfig
from recsys_spark.errors import RecsysError
from recsys_spark.items.cold import cold_factors, knn_factors, unit_rows
from recsys_spark.recs.evaluation import per_user_metrics, summarize
from recsys_spark.recs.model import fit_als
from recsys_spark.recs.split import unit_hash
from recsys_spark.recs.topn import ItemMatrix, top_n

SIMILAR_SCHEMA = "item_id string, rank int, similar_item_id string, score float, basis string"


@dataclass
class ChosenMap:
    """The cold-item map chosen on pretend-new warm items, and every candidate's validation NDCG."""

    method: str  # ridge or knn
    param: float  # reg_param (ridge) or neighbours (knn)
    validation: dict[tuple[str, float], float] = field(default_factory=dict)  # (method, param) -> NDCG@k
    validation_items: int = 0

    @property
    def source(self) -> str:
        return f"text_{self.method}"

    def best_param(self, method: str) -> float:
        """The validated best parameter of `method`."""
        return max((v, p) for (m, p), v in self.validation.items() if m == method)[1]

    def labelled(self) -> dict[str, float]:
        """Validation NDCG per candidate, e.g. {"ridge(reg=1)": 0.21, "knn(k=20)": 0.25}."""
        return {_label(m, p): v for (m, p), v in self.validation.items()}

    def describe(self) -> str:
        return _label(self.method, self.param)

    def factors(self, x_warm: np.ndarray, y_warm: np.ndarray, x_new: np.ndarray) -> np.ndarray:
        return cold_factors(self.method, x_warm, y_warm, x_new, reg=float(self.param), k=int(self.param))


def _label(method: str, param: float) -> str:
    return f"ridge(reg={param:g})" if method == "ridge" else f"knn(k={int(param)})"


def factor_frame(spark, ids: np.ndarray, vectors: np.ndarray) -> DataFrame:
    """(id, features) rows of a catalogue-sized matrix, the shape top-N takes."""
    pdf = pd.DataFrame({"id": ids.astype(np.int32), "features": list(vectors.astype(np.float32))})
    return spark.createDataFrame(pdf, "id int, features array<float>")


def rank_items(users: DataFrame, ids: np.ndarray, vectors: np.ndarray, relevant: DataFrame, k: int) -> dict[str, float]:
    """NDCG/precision/recall@k of ranking the items (`ids`, `vectors`) for `users` (id, features)
    by dot product, against `relevant` (user_idx, item_idx)."""
    recs = top_n(users, ItemMatrix(ids, vectors), relevant.limit(0), k)
    m = summarize(per_user_metrics(recs, relevant, k), recs, len(ids), k)
    return {name: m[name] for name in (f"ndcg_at_{k}", f"precision_at_{k}", f"recall_at_{k}", "users_evaluated")}


def _users_of(model: ALSModel, relevant: DataFrame) -> DataFrame:
    return model.userFactors.join(relevant.select(F.col("user_idx").alias("id")).distinct(), "id")


def choose_map(
    model: ALSModel,
    pairs: DataFrame,
    warm: np.ndarray,
    x_warm: np.ndarray,
    y_warm: np.ndarray,
    cfg: NewItemsConfig,
    k: int,
) -> ChosenMap:
    """The best candidate map by validation NDCG@k on `validation_fraction` of the warm items (ids
    `warm`, embeddings `x_warm`, ALS factors `y_warm`) pretending to be new."""
    rng = np.random.default_rng(cfg.seed)
    n_val = max(1, int(round(cfg.validation_fraction * warm.size)))
    if warm.size - n_val < 2:
        raise RecsysError(
            f"only {warm.size} warm items have text: too few to choose a cold-item map; "
            "check text.path and text.id_column"
        )
    val = np.zeros(warm.size, bool)
    val[rng.choice(warm.size, n_val, replace=False)] = True
    spark = pairs.sparkSession
    val_ids = spark.createDataFrame(pd.DataFrame({"item_idx": warm[val].astype(np.int32)}))
    relevant = pairs.select("user_idx", "item_idx").join(F.broadcast(val_ids), "item_idx").distinct()
    users = _users_of(model, relevant)
    scores: dict[tuple[str, float], float] = {}
    for method in cfg.methods:
        for param in cfg.reg_params if method == "ridge" else cfg.neighbours:
            pretend = ChosenMap(method, param)
            got = rank_items(users, warm[val], pretend.factors(x_warm[~val], y_warm[~val], x_warm[val]), relevant, k)
            scores[(method, param)] = got[f"ndcg_at_{k}"]
    (method, param), _ = max(scores.items(), key=lambda kv: kv[1])  # the first of equals: candidates in config order
    return ChosenMap(method, param, scores, int(n_val))


@dataclass
class NewItemsEvaluation:
    metrics: dict[str, dict[str, float]]  # method -> metric -> value
    chosen: ChosenMap
    items_held_out: int
    items_without_text: int
    users_evaluated: int


def holdout_items(pairs: DataFrame, fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """(warm pairs, held-out pairs): items whose seeded hash is below `fraction` are held out whole."""
    cold = unit_hash("item_idx", seed) < F.lit(fraction)
    return pairs.where(~cold), pairs.where(cold)


def evaluate_new_items(
    pairs: DataFrame, embeddings: DataFrame, als: ALSConfig, cfg: NewItemsConfig, k: int = 10, control: bool = True
) -> NewItemsEvaluation:
    """Metrics@k per method on the held-out items. `pairs`: (user_idx, item_idx, confidence);
    `embeddings`: (item_idx, vector) of the items with text."""
    warm_pairs, cold_pairs = holdout_items(pairs, cfg.holdout_fraction, cfg.seed)
    model = fit_als(warm_pairs, als, implicit=True)
    text = ItemMatrix.of(embeddings, "item_idx", "vector")
    factors = ItemMatrix.of(model.itemFactors)
    cold = np.sort(cold_pairs.select("item_idx").distinct().toPandas()["item_idx"].to_numpy(np.int64))
    warm = factors.ids[np.isin(factors.ids, text.ids)]
    if not cold.size or not text.ids.size:
        raise RecsysError(
            "the new-items protocol has no held-out items with text: "
            "raise new_items.holdout_fraction or check the item texts"
        )
    x_warm, y_warm, x_new = text.take(warm), factors.take(warm), text.take(cold)
    chosen = choose_map(model, warm_pairs, warm, x_warm, y_warm, cfg, k)

    relevant = (
        cold_pairs.select("user_idx", "item_idx")
        .distinct()
        .join(model.userFactors.select(F.col("id").alias("user_idx")), "user_idx")
    )
    users = _users_of(model, relevant)
    ones = users.select("id", F.array(F.lit(1.0).cast("float")).alias("features"))  # rank 1: one order for every user
    rng = np.random.default_rng(cfg.seed)
    pop = warm_pairs.groupBy("item_idx").agg(F.countDistinct("user_idx").alias("n")).toPandas()
    popularity = pop.set_index("item_idx")["n"].reindex(warm).fillna(0).to_numpy(np.float32)[:, None]
    unit = unit_rows(x_new)
    metrics = {
        "random": rank_items(ones, cold, rng.random((cold.size, 1), np.float32), relevant, k),
        "text_popularity": rank_items(
            ones, cold, knn_factors(x_warm, popularity, x_new, int(cfg.neighbours[0])), relevant, k
        ),
        "content": rank_items(
            _mean_embeddings(warm_pairs, embeddings).join(users.select("id"), "id"), cold, unit, relevant, k
        ),
    }
    shuffled = x_new[rng.permutation(cold.size)]
    for method in cfg.methods:
        mapped = ChosenMap(method, chosen.best_param(method))
        metrics[method] = rank_items(users, cold, mapped.factors(x_warm, y_warm, x_new), relevant, k)
        if control:
            metrics[f"{method}_shuffled"] = rank_items(
                users, cold, mapped.factors(x_warm, y_warm, shuffled), relevant, k
            )
    without_text = int((~np.isin(cold, text.ids)).sum())
    return NewItemsEvaluation(metrics, chosen, int(cold.size), without_text, int(metrics["random"]["users_evaluated"]))


def _mean_embeddings(pairs: DataFrame, embeddings: DataFrame) -> DataFrame:
    """(id, features): each user's mean embedding over their items with text."""
    joined = pairs.select("user_idx", "item_idx").join(
        embeddings.select("item_idx", array_to_vector("vector").alias("_v")), "item_idx"
    )
    means = joined.groupBy("user_idx").agg(Summarizer.mean(F.col("_v")).alias("_m"))
    return means.select(F.col("user_idx").alias("id"), vector_to_array("_m", "float32").alias("features"))


def item_status(events: DataFrame, last: dt.datetime, cfg: NewItemsConfig) -> DataFrame:
    """(item_id, first_seen, users, is_new) per item with events: new when first seen within
    `max_age_days` before `last`, or used by fewer than `min_users` users."""
    young = F.col("first_seen") >= F.lit(last - dt.timedelta(days=cfg.max_age_days))
    return (
        events.groupBy("item_id")
        .agg(F.min("event_ts").alias("first_seen"), F.countDistinct("user_id").alias("users"))
        .withColumn("is_new", young | (F.col("users") < cfg.min_users))
    )


def recommend_new(
    users: DataFrame, seen: DataFrame, new_ids: list[str], new_factors: np.ndarray, n: int, source: str
) -> DataFrame:
    """(user_id, rank, item_id, score, source): the top-n new items for every user in `users`
    (user_id, id, features: ALS user factors), items in `seen` (user_id, item_id) excluded."""
    spark = users.sparkSession
    pos = spark.createDataFrame(pd.DataFrame({"item_id": new_ids, "pos": np.arange(len(new_ids), dtype=np.int32)}))
    seen_new = seen.join(F.broadcast(pos), "item_id").join(
        users.select("user_id", F.col("id").alias("user_idx")), "user_id"
    )
    recs = top_n(
        users.select("id", "features"),
        ItemMatrix(np.arange(len(new_ids)), new_factors),
        seen_new.select("user_idx", F.col("pos").alias("item_idx")),
        n,
    )
    return (
        recs.join(users.select("user_id", F.col("id").alias("user_idx")), "user_idx")
        .join(F.broadcast(pos.withColumnRenamed("pos", "item_idx")), "item_idx")
        .select("user_id", "rank", "item_id", "score", F.lit(source).alias("source"))
    )


def similar_items(spark, ids: list[str], vectors: np.ndarray, of: np.ndarray, n: int, basis: str) -> DataFrame:
    """(item_id, rank, similar_item_id, score, basis): for the items at positions `of`, the n most
    similar of `ids` by cosine of `vectors` (itself excluded)."""
    unit = unit_rows(vectors)
    positions = np.arange(len(ids))
    queries = factor_frame(spark, positions[of], unit[of])
    itself = spark.createDataFrame(
        pd.DataFrame({"user_idx": positions[of].astype(np.int32), "item_idx": positions[of].astype(np.int32)})
    )
    recs = top_n(queries, ItemMatrix(positions, unit), itself, n)
    names = spark.createDataFrame(pd.DataFrame({"idx": positions.astype(np.int32), "item_id": ids}))
    return (
        recs.join(F.broadcast(names.withColumnRenamed("idx", "user_idx")), "user_idx")
        .join(F.broadcast(names.toDF("item_idx", "similar_item_id")), "item_idx")
        .select("item_id", "rank", "similar_item_id", "score", F.lit(basis).alias("basis"))
    )
