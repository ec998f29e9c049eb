"""What a served list may hold: recommend.item_filter, exclude, candidates, exclude_seen and
max_per_value.

Item-level rules (the filter over items.path's attributes, the candidate set, excluded items, the
cap's values) become one `kernels.ListRules` of catalogue-sized arrays by item_idx, gathered on the
driver (they grow with the catalogue, not with users or events); per-user exclusions (dismissed
items, items seen with the listed event types) a mask of (user_id, item_idx) pairs. The top-N
kernel applies both before it cuts the list, so a user still gets n items while n remain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events.privacy import pseudonym_key, pseudonymized
from recsys_spark.events.rules import check_condition
from recsys_spark.events.sources import read_side_table
from recsys_spark.infra.tables import read_table
from recsys_spark.recs.kernels import ListRules
from recsys_spark.recs.model import TrainedModel


@dataclass
class Filters:
    """The rules every list of a run obeys. `mask`: (user_id, item_idx) pairs never listed for that
    user; `seen`: whether the model's seen pairs are masked too (exclude_seen all)."""

    rules: ListRules | None
    mask: DataFrame | None
    seen: bool = True

    def pairs(self, users: DataFrame, seen: DataFrame) -> DataFrame | None:
        """(user_idx, item_idx) to mask for users numbered by `users` (user_id, user_idx) whose seen
        pairs are `seen` (user_idx, item_idx); None: the seen pairs, as without filters."""
        if self.seen and self.mask is None:
            return None
        own = seen.select("user_idx", "item_idx").where(F.lit(False))
        if self.mask is not None:
            own = self.mask.join(users, "user_id").select("user_idx", "item_idx")
        return own.unionByName(seen.select("user_idx", "item_idx")) if self.seen else own


def filters_for(spark: SparkSession, cfg: Config, m: TrainedModel) -> Filters | None:
    """The run's Filters for model `m`, or None when recommend sets no filter (lists as before)."""
    r = cfg.recommend
    rules = item_rules(spark, cfg, m.items)
    mask = None
    if r.exclude:
        table = side_table(spark, "recommend.exclude", r.exclude)
        if "user_id" in table.columns:
            key = pseudonym_key(cfg.privacy)  # the file holds raw ids; the tables pseudonyms
            user = pseudonymized(F.col("user_id"), key) if key else F.col("user_id").cast("string")
            mask = _ids(table).select(user.alias("user_id"), "item_id").join(m.items, "item_id").drop("item_id")
    if isinstance(r.exclude_seen, list):
        typed = typed_pairs(read_table(spark, cfg.path(names.EVENTS)), m.items, r.exclude_seen)
        mask = typed if mask is None else mask.unionByName(typed)
    if rules is None and mask is None and r.exclude_seen == "all":
        return None
    return Filters(rules=rules, mask=mask.distinct() if mask is not None else None, seen=r.exclude_seen == "all")


def typed_pairs(events: DataFrame, items: DataFrame, types: list[str]) -> DataFrame:
    """(user_id, item_idx) of the `events` of the listed types: exclude_seen [types]'s mask."""
    return events.where(F.col("event_type").isin(types)).join(items, "item_id").select("user_id", "item_idx")


def with_typed_flag(
    seen: DataFrame, events: DataFrame, users: DataFrame, items: DataFrame, types: list[str]
) -> DataFrame:
    """The model's `seen` pairs (user_idx, item_idx, ...) with `masked`: whether the user has an
    event of the listed types with the item. Saved with the model, so the pyfunc masks what the
    batch job masks under exclude_seen [types]."""
    typed = typed_pairs(events, items, types).join(users, "user_id").select("user_idx", "item_idx").distinct()
    flagged = typed.withColumn("masked", F.lit(True))
    return seen.join(flagged, ["user_idx", "item_idx"], "left").fillna(False, ["masked"])


def item_rules(spark: SparkSession, cfg: Config, items: DataFrame) -> ListRules | None:
    """The ListRules of recommend's item-level settings (item_filter, candidates, an exclude table of
    items alone, max_per_value) over `items` (item_id, item_idx); None when none is set. Train saves
    them with the model, so the served pyfunc applies them as the batch job does."""
    r = cfg.recommend
    excluded = side_table(spark, "recommend.exclude", r.exclude) if r.exclude else None
    if excluded is not None and "user_id" in excluded.columns:
        excluded = None  # per-user pairs: a mask, not an item rule
    if not (r.item_filter or r.candidates or excluded is not None or r.max_per_value):
        return None
    allowed = items.select("item_id", "item_idx")
    attributes = item_attributes(spark, cfg) if cfg.items.path else None
    if r.item_filter:
        check_condition(spark, "recommend.item_filter", r.item_filter)
        allowed = allowed.join(attributes.where(F.expr(r.item_filter)).select("item_id"), "item_id", "left_semi")
    if r.candidates:
        allowed = allowed.join(_ids(side_table(spark, "recommend.candidates", r.candidates)), "item_id", "left_semi")
    if excluded is not None:
        allowed = allowed.join(_ids(excluded), "item_id", "left_anti")
    size = int(items.agg(F.max("item_idx")).first()[0] or 0) + 1
    flags = _flags(allowed, size) if (r.item_filter or r.candidates or excluded is not None) else None
    if not r.max_per_value:
        return ListRules(allowed=flags)
    column, cap = next(iter(r.max_per_value.items()))
    return ListRules(flags, _codes(attributes, items, column, size), cap)


def rules_digest(rules: ListRules | None, exclude_seen: str | list[str]) -> str:
    """A fingerprint of what train saves for the pyfunc beyond the fit (the item rules' arrays and
    the exclude_seen setting that flags seen pairs): `train --if-changed` refits when it moved,
    e.g. after an edit of the item table."""
    h = hashlib.sha256(repr(exclude_seen).encode())
    for part in (rules.allowed, rules.groups) if rules is not None else ():
        h.update(b"none" if part is None else np.ascontiguousarray(part).tobytes())
    h.update(str(rules.cap if rules is not None else "no rules").encode())
    return h.hexdigest()[:16]


def rules_frame(spark: SparkSession, rules: ListRules) -> DataFrame:
    """`rules` as a table (item_idx, allowed, value_code, cap) to save with a model (catalogue-sized)."""
    size = max(a.size for a in (rules.allowed, rules.groups) if a is not None)
    allowed = rules.allowed if rules.allowed is not None else np.ones(size, bool)
    codes = rules.groups if rules.groups is not None else np.full(size, -1, np.int64)
    frame = pd.DataFrame(
        {"item_idx": np.arange(size, dtype=np.int32), "allowed": allowed, "value_code": codes, "cap": rules.cap}
    )
    return spark.createDataFrame(frame, "item_idx int, allowed boolean, value_code long, cap int")


def with_mask(users: DataFrame, mask: DataFrame | None) -> DataFrame:
    """`users` (user_idx, ...) with `mask`, the list of each user's masked items (see topn.top_n)."""
    if mask is None:
        return users
    lists = mask.groupBy("user_idx").agg(F.collect_set("item_idx").alias("mask"))
    return users.join(lists, "user_idx", "left")


def item_attributes(spark: SparkSession, cfg: Config) -> DataFrame:
    """items.path's table with its id column as `item_id` (one row per item: the first of repeats)."""
    t = cfg.items
    table = read_side_table(spark, "items.path", t.format, t.path, t.options)
    if t.id_column not in table.columns:
        raise RecsysError(
            f"items.path {t.path} has no column {t.id_column!r} (its columns: {table.columns}): set items.id_column"
        )
    out = table.withColumnRenamed(t.id_column, "item_id").withColumn("item_id", F.trim(F.col("item_id").cast("string")))
    return out.dropDuplicates(["item_id"])


def side_table(spark: SparkSession, key: str, path: str) -> DataFrame:
    """A table of ids at `key`: CSV with a header (.csv), JSON lines (.json) or Parquet."""
    fmt = "csv" if path.endswith(".csv") else "json" if path.endswith(".json") else "parquet"
    table = read_side_table(spark, key, fmt, path, {"header": "true"} if fmt == "csv" else {})
    if "item_id" not in table.columns:
        raise RecsysError(f"{key} {path} has no item_id column (its columns: {table.columns}): name it item_id")
    return table


def _ids(table: DataFrame) -> DataFrame:
    cols = [c for c in ("user_id", "item_id") if c in table.columns]
    return table.select(*[F.trim(F.col(c).cast("string")).alias(c) for c in cols]).dropna()  # trimmed as ingest trims


def _flags(allowed: DataFrame, size: int) -> np.ndarray:
    """Allowed items (item_idx) as a bool array by item_idx (catalogue-sized)."""
    out = np.zeros(size, bool)
    out[allowed.select("item_idx").toPandas()["item_idx"].to_numpy(dtype=np.int64)] = True
    return out


def _codes(attributes: DataFrame, items: DataFrame, column: str, size: int) -> np.ndarray:
    """Each item's value of `column` as an int code by item_idx (-1: no value; catalogue-sized)."""
    if column not in attributes.columns:
        raise RecsysError(
            f"recommend.max_per_value names {column!r}, which items.path does not have "
            f"(its columns: {attributes.columns})"
        )
    values = items.join(attributes.select("item_id", F.col(column).cast("string").alias("v")), "item_id").toPandas()
    codes, _ = pd.factorize(values["v"], sort=True)  # a missing value is -1: uncapped; sorted: the same codes every run
    out = np.full(size, -1, np.int64)
    out[values["item_idx"].to_numpy(dtype=np.int64)] = codes
    return out
