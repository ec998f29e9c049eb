"""Fold-in: a user's ALS factors from their newest history, with the model's item factors fixed.

Spark MLlib's ALS has no warm start, but every iteration ends with one least-squares solve per
user against fixed item factors (kernels._normal_equations), so that solve on a user's weighted
history is exact: folding a training user's own fit pairs back in returns the model's factors for
them, and a user who arrived after the fit gets the factors a refit of the items would give them.
`fresh_histories` finds the users with events newer than the model's data and weights their whole
history as the fit weighted its pairs; `fresh_lists` serves them (ALS: fold-in; EASE needs only the
history) with the same top-N and `because` as the recommend job.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import ALSConfig, InteractionsConfig
from recsys_spark.errors import RecsysError
from recsys_spark.names import ALS_FOLD_IN, EASE_FOLD_IN
from recsys_spark.recs import ease
from recsys_spark.recs.filters import Filters
from recsys_spark.recs.interactions import build_id_map, build_interactions
from recsys_spark.recs.kernels import Solver, fold_in_batch, solver_for
from recsys_spark.recs.model import TrainedModel, seen_pairs
from recsys_spark.recs.topn import ItemMatrix, explainer, named_lists, top_n

FACTORS_SCHEMA = "id int, features array<float>"  # ALS's factor tables


def fold_in(items: ItemMatrix, history: DataFrame, solver: Solver) -> DataFrame:
    """(id, features) for each user_idx of `history` (user_idx, item_idx, weight: the fit rating,
    null for a pair left out of the fit) with at least one pair to fit on items that have factors.

    `items` (the model's item factors, already on the driver: the top-N that serves the folded-in
    users reads the same matrix) is broadcast; histories stream through `mapInArrow` and are solved
    in stacked batches of similar length, as `because` is.
    """
    bc = history.sparkSession.sparkContext.broadcast((*items.columns(), solver))
    lists = (
        history.where(F.col("weight").isNotNull())
        .groupBy("user_idx")
        .agg(F.collect_list(F.struct("item_idx", F.col("weight").cast("double").alias("weight"))).alias("_h"))
        .select("user_idx", F.col("_h.item_idx").alias("items"), F.col("_h.weight").alias("weights"))
    )

    def solve(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        item_ids, v, how = bc.value
        pos = np.full(int(item_ids.max(initial=-1)) + 1, -1, np.int64)
        pos[item_ids] = np.arange(item_ids.size)
        gram = v.astype(np.float64) @ v.T.astype(np.float64) if how.implicit else None  # Y'Y, once per task
        for batch in batches:
            yield fold_in_batch(batch, v, pos, gram, how)

    return lists.mapInArrow(solve, FACTORS_SCHEMA)


def check_unconstrained(config: dict) -> None:
    """Fold-in solves Spark's unconstrained normal equations: a model fitted with als.nonnegative
    (Spark's NNLS solver) would get other factors than a fit gives."""
    if config["als"].get("nonnegative"):
        raise RecsysError(
            "fold-in solves ALS's unconstrained normal equations, but this model was fitted with "
            "als.nonnegative=true: retrain with als.nonnegative=false, or recommend without --fold-in"
        )


def data_until(m: TrainedModel) -> int:
    """The model's newest event (`data_until` in its config) as microseconds since the epoch."""
    stamp = m.config.get("data_until")
    if stamp is None:
        raise RecsysError(
            "this model records no data_until (it was trained before fold-in existed): "
            "retrain it with `recsys-spark train`, or recommend without --fold-in"
        )
    return (dt.datetime.fromisoformat(stamp) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def fresh_histories(m: TrainedModel, events: DataFrame, users: DataFrame | None = None) -> DataFrame:
    """(user_id, item_idx, weight): the whole history in `events` (clean events) of every user with
    an event newer than the model's data (or of `users`, user_id, whatever their events' dates: the
    stream's batch), on the model's items, weighted as the model's fit weighted its pairs (its
    interactions settings, decay as of the newest event, its fit rating)."""
    if users is None:
        users = events.where(F.unix_micros("event_ts") > F.lit(data_until(m))).select("user_id").distinct()
    theirs = events.join(users.select("user_id"), "user_id", "left_semi")
    cfg = m.config
    as_of = events.agg(F.max("event_ts")).first()[0]
    icfg = dataclasses.replace(InteractionsConfig(**cfg["interactions"]), min_user_items=1, min_item_users=1)
    pairs = build_interactions(theirs, icfg, cfg["events"]["weights"], as_of).join(m.items, "item_id")
    implicit = icfg.mode == "implicit"
    return seen_pairs(pairs, ALSConfig(**cfg["als"]), implicit, cfg.get("chosen", {}), user="user_id")


def fresh_users(m: TrainedModel, fresh: DataFrame) -> DataFrame:
    """(user_id) of the users in `fresh` the serving family can score from that history (ALS: a
    pair it fits on, a positive one for implicit feedback, as `kernels.fold_in_batch` needs; EASE: any pair)."""
    if m.ease is not None:
        return fresh.select("user_id").distinct()
    fits = F.col("weight") > 0 if solver_for(m.config).implicit else F.col("weight").isNotNull()
    return fresh.where(fits).select("user_id").distinct()


def fresh_lists(
    m: TrainedModel, fresh: DataFrame, n: int, names: DataFrame | None = None, filters: Filters | None = None
) -> DataFrame:
    """recommend_users' rows for the users in `fresh` (user_id, item_idx, weight), scored from that
    history: their seen items are its items, and `because` decomposes the fresh score. `source` is
    als_fold_in or ease_fold_in. The lists obey `filters`."""
    local = build_id_map(fresh_users(m, fresh), "user_id", "user_idx")  # numbering for this batch only
    pairs = fresh.join(local, "user_id").select("user_idx", "item_idx", "weight")
    explain = explainer(m, names)
    rules, mask = (filters.rules, filters.pairs(local, pairs)) if filters else (None, None)
    if m.ease is not None:
        lists = ease.ease_top_n(pairs, local.select("user_idx"), *ease.from_frame(m.ease), n, explain, mask, rules)
        source = EASE_FOLD_IN
    else:
        check_unconstrained(m.config)
        items = ItemMatrix.of(m.als.itemFactors)  # collected once, for the fold-in and its top-N
        factors = fold_in(items, pairs, solver_for(m.config))
        lists = top_n(factors, items, pairs, n, explain=explain, mask=mask, rules=rules)
        source = ALS_FOLD_IN
    return named_lists(lists, local, m.items, source)
