"""Offline ranking metrics at k, by definition, computed with DataFrame operations.

For a user with relevant set R (test items not seen in training) and recommendations ranked
1..k, with rel(i) = 1 when the item at rank i is in R:
  precision@k = hits / k             recall@k = hits / |R|          hit_rate@k = [hits > 0]
  NDCG@k = sum rel(i) / log2(i + 1) over the ideal sum_{i <= min(|R|, k)} 1 / log2(i + 1)
  MAP@k  = mean over users of sum_i rel(i) * precision@i / min(|R|, k)
  catalog coverage = distinct items recommended to evaluated users / items in the catalogue.
Beyond accuracy (`beyond_accuracy`), for the same lists:
  diversity@k = mean over users of the mean over item pairs of 1 - cosine(item vectors)
  novelty@k   = mean over recommended items of -log2(share of training users who used the item)
Users are evaluated when they have a training interaction and at least one relevant test item.
`by_history` gives the same means per cohort of history length (distinct training items: 1-5,
6-20, 21+), which shows where the model helps: usually not on the users with little history.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.items.cold import unit_rows

METRICS = ("precision", "recall", "ndcg", "map", "hit_rate")
HISTORY_COHORTS = ("1-5", "6-20", "21+")  # distinct training items per user


def relevant_items(train: DataFrame, test: DataFrame) -> DataFrame:
    """(user_idx, item_idx): test pairs of users with training history, minus pairs seen in training."""
    seen = train.select("user_idx", "item_idx")
    return (
        test.select("user_idx", "item_idx")
        .distinct()
        .join(seen.select("user_idx").distinct(), "user_idx")
        .join(seen, ["user_idx", "item_idx"], "left_anti")
    )


def per_user_metrics(recs: DataFrame, relevant: DataFrame, k: int) -> DataFrame:
    """One row per user with relevant items: n_relevant, hits, precision, recall, ndcg, map, hit_rate.

    User 1 is recommended items 10, 11, 12 and used 11 and 13 in the test: one hit at rank 2, so
    precision@3 1/3, recall 1/2, NDCG (1/log2 3) / (1 + 1/log2 3) = 0.3869, AP (1/2) / 2 = 0.25:

    >>> recs = spark.createDataFrame([(1, 1, 10), (1, 2, 11), (1, 3, 12)], "user_idx int, rank int, item_idx int")
    >>> used = spark.createDataFrame([(1, 11), (1, 13)], "user_idx int, item_idx int")
    >>> r = per_user_metrics(recs, used, k=3).first()
    >>> (r.hits, round(r.precision, 4), r.recall, round(r.ndcg, 4), r.map, r.hit_rate)
    (1, 0.3333, 0.5, 0.3869, 0.25, 1.0)
    """
    rel = relevant.select("user_idx", "item_idx", F.lit(1).alias("_rel"))
    topk = recs.where(F.col("rank") <= k).select("user_idx", "rank", "item_idx")
    w = Window.partitionBy("user_idx").orderBy("rank").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    marked = (
        topk.join(rel, ["user_idx", "item_idx"], "left").fillna(0, ["_rel"]).withColumn("_cum", F.sum("_rel").over(w))
    )
    per_user = marked.groupBy("user_idx").agg(
        F.sum("_rel").alias("hits"),
        F.sum(F.col("_rel") / F.log2(F.col("rank") + 1)).alias("_dcg"),
        F.sum(F.col("_rel") * F.col("_cum") / F.col("rank")).alias("_ap"),
    )
    counts = relevant.groupBy("user_idx").agg(F.count("*").cast("int").alias("n_relevant"))
    ideal = F.aggregate(
        F.sequence(F.lit(1), F.least(F.col("n_relevant"), F.lit(k))),
        F.lit(0.0),
        lambda acc, i: acc + 1.0 / F.log2(i + 1),
    )
    hits = F.coalesce(F.col("hits"), F.lit(0)).cast("int")
    return counts.join(per_user, "user_idx", "left").select(
        "user_idx",
        "n_relevant",
        hits.alias("hits"),
        (hits / F.lit(k)).alias("precision"),
        (hits / F.col("n_relevant")).alias("recall"),
        (F.coalesce(F.col("_dcg"), F.lit(0.0)) / ideal).alias("ndcg"),
        (F.coalesce(F.col("_ap"), F.lit(0.0)) / F.least(F.col("n_relevant"), F.lit(k))).alias("map"),
        (hits > 0).cast("double").alias("hit_rate"),
    )


def summarize(per_user: DataFrame, recs: DataFrame, n_catalog: int, k: int, prefix: str = "") -> dict[str, float]:
    """Mean metrics over evaluated users, named as logged: `precision_at_10`, ..., `catalog_coverage`."""
    row = per_user.agg(F.count("*").alias("users"), *[F.avg(m).alias(m) for m in METRICS]).first()
    users = per_user.select("user_idx")
    shown = recs.where(F.col("rank") <= k).join(users, "user_idx").select("item_idx").distinct().count()
    out = {f"{prefix}{m}_at_{k}": float(row[m] or 0.0) for m in METRICS}
    out[f"{prefix}catalog_coverage"] = shown / n_catalog if n_catalog else 0.0
    out[f"{prefix}users_evaluated"] = int(row["users"])
    return out


@dataclass(frozen=True)
class ItemMeasures:
    """What diversity and novelty read per item, gathered on the driver once per evaluation
    (catalogue-sized) and broadcast to the lists of every model evaluated."""

    ids: np.ndarray  # item_idx of each row of `unit`
    unit: np.ndarray  # item vectors scaled to length 1
    pop_ids: np.ndarray  # item_idx of each `surprise`
    surprise: np.ndarray  # -log2(share of the training users who used the item)
    n_users: int

    @classmethod
    def of(cls, item_vectors: DataFrame, pop: DataFrame, n_users: int) -> ItemMeasures:
        """From (id, features) vectors and (item_idx, popularity) among `n_users` training users."""
        items = item_vectors.select("id", "features").toPandas()
        vec = np.vstack(items["features"].to_numpy()).astype(np.float64) if len(items) else np.zeros((0, 1))
        popular = pop.select("item_idx", "popularity").toPandas()
        surprise = -np.log2(np.maximum(popular["popularity"].to_numpy(np.float64), 1.0) / max(n_users, 1))
        return cls(
            items["id"].to_numpy(np.int64), unit_rows(vec), popular["item_idx"].to_numpy(np.int64), surprise, n_users
        )


def list_measures(recs: DataFrame, items: ItemMeasures, k: int) -> DataFrame:
    """(user_idx, diversity, novelty, items) of each user's top-k, in one pass over the lists:

    - diversity: the mean over pairs of items of 1 - cosine of their vectors; null for a list of
      one. Uses sum over pairs of cos = (|sum of unit vectors|^2 - m) / 2 for m items, so the cost
      per list is linear in m.
    - novelty: the mean over the list of -log2(share of the training users who used the item; an
      item nobody used counts as one user)."""
    bc = recs.sparkSession.sparkContext.broadcast(items)
    lists = recs.where(F.col("rank") <= k).groupBy("user_idx").agg(F.collect_list("item_idx").alias("_items"))

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        m = bc.value
        top = int(max(m.ids.max(initial=0), m.pop_ids.max(initial=0))) + 1
        pos = np.full(top, -1)
        pos[m.ids] = np.arange(m.ids.size)
        surprise = np.full(top, np.log2(max(m.n_users, 1)))  # an item nobody used: one user's share
        surprise[m.pop_ids] = m.surprise
        for pdf in batches:
            diversity, novelty = np.full(len(pdf), np.nan), np.full(len(pdf), np.nan)
            for i, listed in enumerate(pdf["_items"]):
                listed = np.asarray(listed, np.int64)
                listed = listed[listed < top]
                rows = pos[listed]
                rows = rows[rows >= 0]
                if rows.size > 1:
                    total = m.unit[rows].sum(axis=0)
                    diversity[i] = 1.0 - (total @ total - rows.size) / (rows.size * (rows.size - 1))
                if listed.size:
                    novelty[i] = surprise[listed].mean()
            yield pd.DataFrame(
                {
                    "user_idx": pdf["user_idx"],
                    "diversity": diversity,
                    "novelty": novelty,
                    "items": pdf["_items"].map(len).astype("int32"),
                }
            )

    return lists.mapInPandas(run, "user_idx int, diversity double, novelty double, items int")


def beyond_accuracy(recs: DataFrame, items: ItemMeasures, k: int, prefix: str = "") -> dict[str, float]:
    """Mean diversity over lists and novelty over recommended items (see `list_measures`) of the
    top-k lists in `recs`, as `diversity_at_k`, `novelty_at_k`."""
    row = (
        list_measures(recs, items, k)
        .agg(  # novelty is a mean over items: lists weigh by length
            F.avg("diversity").alias("d"), (F.sum(F.col("novelty") * F.col("items")) / F.sum("items")).alias("n")
        )
        .first()
    )
    return {f"{prefix}diversity_at_{k}": float(row["d"] or 0.0), f"{prefix}novelty_at_{k}": float(row["n"] or 0.0)}


def history_cohort(n_items: Column) -> Column:
    """The HISTORY_COHORTS label of a user with `n_items` distinct training items."""
    return F.when(n_items <= 5, "1-5").when(n_items <= 20, "6-20").otherwise("21+")


def by_history(per_user: DataFrame, train: DataFrame, k: int, prefix: str = "") -> list[dict[str, object]]:
    """Mean metrics per history cohort: [{history, users, <prefix>precision_at_k, ...}] (three rows at most)."""
    history = train.groupBy("user_idx").agg(F.countDistinct("item_idx").alias("_n"))
    rows = (
        per_user.join(history, "user_idx")
        .groupBy(history_cohort(F.col("_n")).alias("history"))
        .agg(F.count("*").alias("users"), *[F.avg(m).alias(m) for m in METRICS])
        .collect()
    )
    return [
        {"history": r["history"], "users": int(r["users"]), **{f"{prefix}{m}_at_{k}": float(r[m]) for m in METRICS}}
        for r in rows
    ]
