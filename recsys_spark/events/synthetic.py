"""Deterministic synthetic event logs with the structure real products show.

Users sign up across the window and leave after a random lifetime (heterogeneous hazards, with
later cohorts churning more slowly), so weekly retention decays steeply then flattens and differs
by cohort. Items have Zipf popularity and belong to taste clusters; each user mostly browses one
cluster, so a collaborative model can beat popularity. Sessions are view -> click -> cart ->
purchase funnels. Users are generated in chunks, one Spark task per chunk, each seeded by
(seed, chunk): the output depends only on the config and memory per task stays bounded.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import GenerateConfig
from recsys_spark.events.schema import RAW_SCHEMA

VIEWS_PER_SESSION = 4.0  # 1 + Poisson(3)
P_CLICK, P_CART, P_BUY = 0.35, 0.25, 0.4
P_IN_CLUSTER = 0.75
BOUNCE = 0.3  # share of users who never return after their first session
EVENTS_PER_SESSION = VIEWS_PER_SESSION * (1 + P_CLICK + P_CLICK * P_CART + P_CLICK * P_CART * P_BUY)
DAY = 86_400.0


@dataclass(frozen=True)
class Catalog:
    """Item popularity and taste clusters, shared by every chunk."""

    global_cdf: np.ndarray  # cumulative popularity over all items
    cluster_cdf: np.ndarray  # cluster c's cumulative popularity, shifted into [c, c + 1]
    cluster_items: np.ndarray  # item index for each position of cluster_cdf
    cluster: np.ndarray  # each item's taste cluster


def make_catalog(cfg: GenerateConfig) -> Catalog:
    rng = np.random.default_rng([cfg.seed, 1_000_003])
    rank = rng.permutation(cfg.items)
    weight = 1.0 / (rank + 1.0) ** 1.05
    cluster = rng.integers(0, cfg.clusters, cfg.items)
    order = np.lexsort((np.arange(cfg.items), cluster))
    cdf = np.empty(cfg.items)
    for c in range(cfg.clusters):
        idx = order[cluster[order] == c]
        if idx.size:
            pos = np.flatnonzero(cluster[order] == c)
            cdf[pos] = c + np.cumsum(weight[idx]) / weight[idx].sum()
    return Catalog(np.cumsum(weight) / weight.sum(), cdf, order, cluster)


def generate_chunk(cfg: GenerateConfig, catalog: Catalog, chunk: int) -> pd.DataFrame:
    """The events of users [chunk * users_per_chunk, ...), in RAW_SCHEMA column order."""
    rng = np.random.default_rng([cfg.seed, chunk])
    u0 = chunk * cfg.users_per_chunk
    n = max(0, min(cfg.users, u0 + cfg.users_per_chunk) - u0)
    horizon = cfg.days * DAY
    signup = rng.uniform(0, horizon, n)
    base_hazard = 0.06 * (1.0 - 0.5 * signup / horizon)  # per day; later cohorts stay longer
    hazard = rng.gamma(0.8, base_hazard / 0.8)
    life = np.where(rng.random(n) < BOUNCE, 0.0, rng.exponential(1.0 / np.maximum(hazard, 1e-9)))
    span = np.minimum(life, (horizon - signup) / DAY)  # active days inside the window
    rate = rng.lognormal(np.log(0.4), 0.7, n)  # sessions per active day
    target_sessions = cfg.events * n / max(cfg.users, 1) / EVENTS_PER_SESSION
    scale = max(target_sessions - n, 0.0) / max(float(np.sum(rate * span)), 1e-9)
    sessions = 1 + rng.poisson(scale * rate * span)

    s_user = np.repeat(np.arange(n), sessions)
    first = np.r_[0, np.cumsum(sessions)[:-1]]
    offset = rng.random(s_user.size) * span[s_user] * DAY
    offset[first] = 0.0  # the first session is the signup
    s_time = signup[s_user] + offset

    views = 1 + rng.poisson(VIEWS_PER_SESSION - 1, s_user.size)
    v_sess = np.repeat(np.arange(s_user.size), views)
    v_user = s_user[v_sess]
    gaps = rng.exponential(40.0, v_sess.size)
    csum = np.cumsum(gaps)
    start = np.r_[0, np.cumsum(views)[:-1]]
    within = csum - (csum[start] - gaps[start])[v_sess]
    v_time = s_time[v_sess] + within
    taste = rng.integers(0, cfg.clusters, n)[v_user]
    in_cluster = rng.random(v_sess.size) < P_IN_CLUSTER
    u = rng.random(v_sess.size)
    item = np.where(
        in_cluster,
        catalog.cluster_items[np.minimum(np.searchsorted(catalog.cluster_cdf, taste + u), cfg.items - 1)],
        np.minimum(np.searchsorted(catalog.global_cdf, u), cfg.items - 1),
    )

    click = rng.random(v_sess.size) < P_CLICK
    cart = click & (rng.random(v_sess.size) < P_CART)
    buy = cart & (rng.random(v_sess.size) < P_BUY)
    parts = [
        ("view", np.ones(v_sess.size, bool), 0.0),
        ("click", click, 5.0),
        ("cart", cart, 20.0),
        ("purchase", buy, 60.0),
    ]
    users, items, types, times, values = [], [], [], [], []
    for name, mask, lag in parts:
        k = int(mask.sum())
        users.append(u0 + v_user[mask])
        items.append(item[mask])
        types.append(np.full(k, name, dtype=object))
        times.append(v_time[mask] + lag * rng.random(k))
        values.append(1.0 + rng.poisson(0.3, k) if name == "purchase" else np.full(k, np.nan))
    pdf = pd.DataFrame(
        {
            "user_id": _ids("u", np.concatenate(users), 7),
            "item_id": _ids("i", np.concatenate(items), 6),
            "event_type": np.concatenate(types),
            "event_ts": _timestamps(cfg.start_date, np.minimum(np.concatenate(times), horizon - 1)),
            "value": np.concatenate(values),
        }
    )
    return _corrupt(pdf, rng, cfg.bad_fraction)


def generate_events(spark: SparkSession, cfg: GenerateConfig) -> DataFrame:
    """Raw events (RAW_SCHEMA plus `event_date`), one task per chunk of users."""
    catalog = make_catalog(cfg)
    chunks = max(1, math.ceil(cfg.users / cfg.users_per_chunk))

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            for chunk in batch["id"]:
                yield generate_chunk(cfg, catalog, int(chunk))

    events = spark.range(chunks, numPartitions=chunks).mapInPandas(run, RAW_SCHEMA)
    return events.withColumn("event_date", F.to_date("event_ts"))


THEMES = [
    "garden",
    "kitchen",
    "camping",
    "office",
    "baby",
    "fitness",
    "music",
    "pet",
    "travel",
    "reading",
    "gaming",
    "beauty",
    "cycling",
    "baking",
    "painting",
    "fishing",
]
STYLES = ["classic", "compact", "deluxe", "eco", "mini", "pro", "retro", "smart", "soft", "vintage"]
THINGS = ["set", "kit", "bag", "lamp", "mat", "box", "stand", "case", "tool", "pack", "light", "holder"]


def item_texts_table(cfg: GenerateConfig) -> pd.DataFrame:
    """(item_id, title) for the generated catalogue: a style, the item's taste cluster's theme and a
    thing, e.g. "retro camping lamp"; so an item's text says which users want it, as real titles do."""
    catalog = make_catalog(cfg)
    rng = np.random.default_rng([cfg.seed, 2_000_003])
    idx = np.arange(cfg.items)
    title = (
        pd.Series(np.array(STYLES)[rng.integers(0, len(STYLES), cfg.items)])
        + " "
        + pd.Series(np.array(THEMES)[catalog.cluster % len(THEMES)])
        + " "
        + pd.Series(np.array(THINGS)[rng.integers(0, len(THINGS), cfg.items)])
    )
    return pd.DataFrame({"item_id": _ids("i", idx, 6), "title": title})


def _ids(prefix: str, idx: np.ndarray, width: int) -> pd.Series:
    return prefix + pd.Series(idx, dtype="int64").astype(str).str.zfill(width)


def _timestamps(start: dt.date, seconds: np.ndarray) -> pd.Series:
    origin = pd.Timestamp(start)
    return origin + pd.to_timedelta(np.floor(seconds).astype("int64"), unit="s")


def _corrupt(pdf: pd.DataFrame, rng: np.random.Generator, fraction: float) -> pd.DataFrame:
    """Break a few rows on purpose (one defect each), so quarantine has something to show."""
    n_bad = int(rng.binomial(len(pdf), fraction)) if len(pdf) and fraction > 0 else 0
    if n_bad == 0:
        return pdf
    rows = rng.choice(len(pdf), n_bad, replace=False)
    kind = rng.integers(0, 6, n_bad)
    pdf.loc[rows[kind == 0], "user_id"] = None
    pdf.loc[rows[kind == 1], "item_id"] = "  "
    pdf.loc[rows[kind == 2], "event_type"] = "bogus"
    pdf.loc[rows[kind == 3], "value"] = np.inf
    pdf.loc[rows[kind == 4], "event_ts"] = pd.Timestamp("2099-01-01")
    return pd.concat([pdf, pdf.iloc[rows[kind == 5]]], ignore_index=True)
