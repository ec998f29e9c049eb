"""Users who respond to what they were served, so the effect estimator meets a known truth.

Each user keeps a taste (the catalogue cluster they used most: the generator's clusters are
deterministic in its config) and an activity level (active days in the last 28 days / 28). For a
period of `days` after the serving date, a user's chance to return is

    p0 = 1 - (1 - q)^days,  q = min(0.9, 0.01 + 0.8 * activity)     (lists change nothing)
    p(list) = 1 - (1 - p0) * exp(-effect * matches(list) / n)

with matches(list) the number of the list's n items in the user's taste cluster and `effect`
(`simulate.effect`) the strength of the response: 0 means lists change nothing. Both lists are
computed for every user, whatever their arm (the ALS list of recommend's treatment arm and the
control policy's list), so the round's true average effect on returning within `days` is known
exactly: the mean over assigned users of p(treatment list) - p(control list). A returning user's
events (sessions of views, some clicks and purchases) fall on random days of the period, their
items drawn from their taste cluster or, with probability 1/2, from the matching served items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.analytics.arms import TREATMENT
from recsys_spark.events.schema import RAW_SCHEMA
from recsys_spark.events.synthetic import Catalog


def cluster_table(catalog: Catalog, spark: SparkSession) -> DataFrame:
    """(item_id, cluster) of the generated catalogue."""
    ids = [f"i{i:06d}" for i in range(catalog.cluster.size)]
    return spark.createDataFrame(pd.DataFrame({"item_id": ids, "cluster": catalog.cluster.astype("int32")}))


def user_states(events: DataFrame, clusters: DataFrame, served: object) -> DataFrame:
    """(user_id, taste, activity): the cluster a user used most (ties: the lower cluster) and their
    share of active days among the 28 days up to the serving date."""
    per = events.join(clusters, "item_id").groupBy("user_id", "cluster").count()
    taste = (
        per.groupBy("user_id")
        .agg(F.max_by("cluster", F.struct(F.col("count"), -F.col("cluster"))).alias("taste"))
        .select("user_id", F.col("taste").cast("int"))
    )
    recent = F.datediff(F.lit(served), F.col("event_date")).between(0, 27)
    activity = events.groupBy("user_id").agg(
        (F.count_distinct(F.when(recent, F.col("event_date"))) / F.lit(28.0)).alias("activity")
    )
    return taste.join(activity, "user_id")


def matches(lists: DataFrame, states: DataFrame, clusters: DataFrame) -> DataFrame:
    """(user_id, matches, matching): how many of a user's listed items are in their taste cluster, and which."""
    hit = lists.join(clusters, "item_id").join(states.select("user_id", "taste"), "user_id")
    hit = hit.where(F.col("cluster") == F.col("taste"))
    return hit.groupBy("user_id").agg(F.count(F.lit(1)).alias("matches"), F.collect_list("item_id").alias("matching"))


def base_return(activity: Column, days: int) -> Column:
    q = F.least(F.lit(0.9), F.lit(0.01) + F.lit(0.8) * activity)
    return F.lit(1.0) - F.pow(F.lit(1.0) - q, F.lit(float(days)))


def with_list(p0: Column, matched: Column, effect: float, n: int) -> Column:
    return F.lit(1.0) - (F.lit(1.0) - p0) * F.exp(F.lit(-effect / n) * F.coalesce(matched, F.lit(0)))


def responding(users: DataFrame) -> DataFrame:
    """(user_id, taste, activity, p_served, matching) from users with `arm`, p_t / p_c and
    match_t / match_c: the chance to return and the matching items of the list their arm got."""
    treated = F.col("arm") == TREATMENT
    return users.select(
        "user_id",
        "taste",
        "activity",
        F.when(treated, F.col("p_t")).otherwise(F.col("p_c")).alias("p_served"),
        F.when(treated, F.col("match_t")).otherwise(F.col("match_c")).alias("matching"),
    )


def draw_events(users: DataFrame, catalog: Catalog, start: object, days: int, seed: int, round_: int) -> DataFrame:
    """Next-period raw events of `users` (user_id, taste, activity, p_served, matching): each
    returns with probability p_served; seeded by (seed, round, user id), so a run is reproducible."""
    cdf, items = catalog.cluster_cdf, catalog.cluster_items
    origin = pd.Timestamp(start) + pd.Timedelta(days=1)
    last = origin + pd.Timedelta(seconds=days * 86_400 - 1)  # the period's last second

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for b in batches:
            out = []
            for r in b.itertuples():
                key = int(hashlib.sha256(f"{seed}/{round_}/{r.user_id}".encode()).hexdigest()[:15], 16)
                rng = np.random.default_rng(key)
                if rng.random() >= r.p_served:
                    continue
                sessions = 1 + rng.poisson(max(r.activity, 0.05) * days)
                served = list(r.matching) if r.matching is not None else []
                for _ in range(sessions):
                    t = origin + pd.Timedelta(
                        seconds=int(rng.integers(0, days * 86_400 - 60))
                    )  # whole seconds (Spark keeps us)
                    for v in range(1 + rng.poisson(3)):
                        if served and rng.random() < 0.5:
                            item = served[rng.integers(len(served))]
                        else:
                            pos = np.searchsorted(cdf, r.taste + rng.random())
                            item = f"i{int(items[min(pos, items.size - 1)]):06d}"
                        at = min(t + pd.Timedelta(seconds=40 * v), last - pd.Timedelta(seconds=60))
                        out.append((r.user_id, item, "view", at, float("nan")))
                        if rng.random() < 0.35:
                            out.append((r.user_id, item, "click", at + pd.Timedelta(seconds=5), float("nan")))
                            if rng.random() < 0.1:
                                out.append((r.user_id, item, "purchase", at + pd.Timedelta(seconds=60), 1.0))
            yield pd.DataFrame(out, columns=RAW_SCHEMA.fieldNames())

    return users.mapInPandas(run, RAW_SCHEMA).withColumn("event_date", F.to_date("event_ts"))
