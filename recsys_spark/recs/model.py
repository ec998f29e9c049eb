"""Spark MLlib ALS: build from config, fit, and save/load with everything serving needs.

A saved model is a directory: `als/` (the ALSModel), `users/` and `items/` (string id <-> int
maps), `seen/` (training pairs with the rating the fit read: excluded from recommendations, and
what explanations decompose scores by), `popular/` (the fallback for
unknown users), `ease/` when EASE serves (its B, recs/ease.py; `family: ease` in the config) and
`config.yaml` (the resolved config that made it). It is written through a
staging directory, so a failed save never leaves a half model where the recommend job looks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

import yaml
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import FIT_PARAMS, ALSConfig
from recsys_spark.errors import RecsysError
from recsys_spark.infra.filesystem import SUCCESS, path_exists, read_text, write_text
from recsys_spark.infra.tables import staged_dir


def fit_params(cfg: ALSConfig, **overrides: Any) -> dict[str, Any]:
    """The configured values of FIT_PARAMS, with `overrides` (a tuner's choice) on top."""
    return {**{name: getattr(cfg, name) for name in FIT_PARAMS}, **overrides}


def fit_rating(confidence: str, epsilon: float, min_value: float | None) -> Column:
    """A pair's rating as ALS reads it: implicit ALS weights a pair by 1 + alpha * rating, so
    `log` gives 1 + alpha * log(1 + r / epsilon). Null for a pair whose max_value is below
    `min_value` (left out of the fit)."""
    rating = F.log1p(F.col("confidence") / F.lit(epsilon)).cast("float") if confidence == "log" else F.col("confidence")
    return rating if min_value is None else F.when(F.col("max_value") >= min_value, rating)


def als_input(pairs: DataFrame, confidence: str, epsilon: float, min_value: float | None) -> DataFrame:
    """The pairs ALS fits on, `confidence` holding their `fit_rating`."""
    if min_value is not None:
        pairs = pairs.where(F.col("max_value") >= min_value)
    return pairs.withColumn("confidence", fit_rating(confidence, epsilon, None))


def seen_pairs(
    pairs: DataFrame, cfg: ALSConfig, implicit: bool, params: dict[str, Any], user: str = "user_idx"
) -> DataFrame:
    """(user, item_idx, weight) of the pairs a model was fitted on: never recommended again, and
    with `weight` (the fit rating, null when left out) what explanations and fold-in solve with."""
    p = fit_params(cfg, **params)
    rating = fit_rating(p["confidence"] if implicit else "linear", cfg.epsilon, p["min_value"])
    return pairs.select(user, "item_idx", rating.cast("float").alias("weight"))


def fit_als(interactions: DataFrame, cfg: ALSConfig, implicit: bool, **params: Any) -> ALSModel:
    """Fit ALS on (user_idx, item_idx, confidence[, max_value]); `params` override FIT_PARAMS."""
    p = fit_params(cfg, **params)  # checked by config.validate
    if interactions.isEmpty():
        raise RecsysError(
            "no training interactions: the training period is empty (check split.cutoff/test_days and the events table)"
        )
    blocks = interactions.sparkSession.sparkContext.defaultParallelism
    als = ALS(
        userCol="user_idx",
        itemCol="item_idx",
        ratingCol="confidence",
        implicitPrefs=implicit,
        rank=p["rank"],
        regParam=p["reg_param"],
        alpha=p["alpha"],
        maxIter=p["max_iter"],
        seed=cfg.seed,
        nonnegative=cfg.nonnegative,
        checkpointInterval=cfg.checkpoint_interval,
        numUserBlocks=cfg.num_user_blocks or blocks,
        numItemBlocks=cfg.num_item_blocks or blocks,
        coldStartStrategy=cfg.cold_start_strategy,
        intermediateStorageLevel=cfg.intermediate_storage_level,
        finalStorageLevel=cfg.final_storage_level,
    )
    return als.fit(als_input(interactions, p["confidence"] if implicit else "linear", cfg.epsilon, p["min_value"]))


class Factors(NamedTuple):
    """A model's two factor tables (id, features): all that top-N and the metrics read of it, so a
    fitted ALSModel or factors re-keyed from another run's model (recs/promotion.py) can be scored."""

    userFactors: DataFrame  # noqa: N815 (ALSModel's attribute names)
    itemFactors: DataFrame  # noqa: N815


@dataclass
class TrainedModel:
    als: ALSModel
    users: DataFrame  # user_id, user_idx
    items: DataFrame  # item_id, item_idx
    seen: DataFrame  # user_idx, item_idx, weight (the fit rating; older models: no weight)
    popular: DataFrame  # item_idx, popularity
    config: dict[str, Any]
    ease: DataFrame | None = None  # id, features: EASE's B by column (ease.weights_frame) when EASE serves
    rules: DataFrame | None = None  # item_idx, allowed, value_code: recommend's item rules (filters.rules_frame)

    @property
    def model_id(self) -> str:
        """What the recommendations table records as the model that served a list: the MLflow run
        of the train (or forget) that wrote it, or with tracking off a hash of its config.yaml
        (its data, settings and output root)."""
        run = self.config.get("mlflow_run_id")
        if run:
            return str(run)
        text = json.dumps(self.config, sort_keys=True, default=str)
        return "config-" + hashlib.sha256(text.encode()).hexdigest()[:12]


OPTIONAL = ("ease", "rules")  # the tables a saved model may lack


def save_model(model: TrainedModel, path: str) -> None:
    spark = model.users.sparkSession
    with staged_dir(spark, path) as tmp:
        model.als.write().overwrite().save(f"{tmp}/als")
        for name in ("users", "items", "seen", "popular", *[o for o in OPTIONAL if getattr(model, o) is not None]):
            getattr(model, name).write.mode("overwrite").parquet(f"{tmp}/{name}")
        write_text(spark, f"{tmp}/config.yaml", yaml.safe_dump(model.config, sort_keys=False))


def remove_users(
    spark: SparkSession, path: str, ids: DataFrame, run_id: str | None = None
) -> tuple[int, dict[str, Any]]:
    """Rewrite the saved model at `path` without the users in `ids` (user_id): their id-map rows,
    factors and seen pairs (items, popularity and EASE's item-item B are aggregates and stay). With `run_id` (the
    forget run that will log the rewritten model) its config names that run, so the next forget
    finds what it logged. (users removed, the model's config as it was)."""
    model = load_model(spark, path)
    gone = model.users.join(F.broadcast(ids.select("user_id").distinct()), "user_id", "left_semi").cache()
    n = gone.count()
    if n:
        idx = F.broadcast(gone.select("user_idx"))
        with staged_dir(spark, path) as tmp:
            model.als.write().overwrite().save(f"{tmp}/als")
            factors = model.als.userFactors.join(idx.withColumnRenamed("user_idx", "id"), "id", "left_anti")
            factors.write.mode("overwrite").parquet(f"{tmp}/als/userFactors")
            model.users.join(idx, "user_idx", "left_anti").write.mode("overwrite").parquet(f"{tmp}/users")
            model.seen.join(idx, "user_idx", "left_anti").write.mode("overwrite").parquet(f"{tmp}/seen")
            for name in ("items", "popular", *[o for o in OPTIONAL if getattr(model, o) is not None]):
                getattr(model, name).write.mode("overwrite").parquet(f"{tmp}/{name}")
            earlier = [*model.config.get("rewritten_from_runs", []), model.config.get("mlflow_run_id")]
            config = {**model.config, "mlflow_run_id": run_id, "rewritten_from_runs": [r for r in earlier if r]}
            write_text(spark, f"{tmp}/config.yaml", yaml.safe_dump(config if run_id else model.config, sort_keys=False))
    gone.unpersist()
    return n, model.config


def saved_config(spark: SparkSession, path: str) -> dict[str, Any] | None:
    """The config.yaml of the saved model at `path`, or None when there is none."""
    if not path_exists(spark, f"{path.rstrip('/')}/{SUCCESS}"):
        return None
    return yaml.safe_load(read_text(spark, f"{path}/config.yaml"))


# The config sections that decide what train fits: a saved model fitted with other values of them
# is not the model train would fit now (train.if_changed compares them besides the events).
FIT_SECTIONS = ("events", "interactions", "split", "als", "tune", "model", "ease")


def fit_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The FIT_SECTIONS of a config dict, and train's own keys but if_changed, as YAML reads them back."""
    train = {k: v for k, v in config.get("train", {}).items() if k != "if_changed"}
    return yaml.safe_load(yaml.safe_dump({**{k: config.get(k) for k in FIT_SECTIONS}, "train": train}))


def fitted_on(config: dict[str, Any] | None, events_until: str, n_events: int, settings: dict[str, Any]) -> bool:
    """Whether a saved model (its config) was fitted on events with this newest event and count
    (nothing arrived since, late events included, and nothing was erased) with these fit settings.

    >>> saved = {"events_until": "2026-01-31T18:30:00+00:00", "data_events": 900, "als": {"rank": 8}}
    >>> fitted_on(saved, "2026-01-31T18:30:00+00:00", 900, fit_settings({"als": {"rank": 8}}))
    True
    >>> fitted_on(saved, "2026-01-31T18:30:00+00:00", 901, fit_settings({"als": {"rank": 8}}))
    False
    >>> fitted_on(saved, "2026-01-31T18:30:00+00:00", 900, fit_settings({"als": {"rank": 16}}))
    False
    >>> fitted_on({"family": "als"}, "2026-01-31T18:30:00+00:00", 900, {})  # saved before these were recorded
    False
    """
    return (
        config is not None
        and config.get("events_until") == events_until
        and config.get("data_events") == n_events
        and fit_settings(config) == settings
    )


def load_model(spark: SparkSession, path: str) -> TrainedModel:
    if not path_exists(spark, f"{path.rstrip('/')}/{SUCCESS}"):
        raise RecsysError(
            f"no saved model at {path}: run `recsys-spark train` first, or set recommend.model to a model directory"
        )
    return TrainedModel(
        als=ALSModel.load(f"{path}/als"),
        users=spark.read.parquet(f"{path}/users"),
        items=spark.read.parquet(f"{path}/items"),
        seen=spark.read.parquet(f"{path}/seen"),
        popular=spark.read.parquet(f"{path}/popular"),
        config=yaml.safe_load(read_text(spark, f"{path}/config.yaml")),
        **{o: spark.read.parquet(f"{path}/{o}") for o in OPTIONAL if path_exists(spark, f"{path}/{o}")},
    )
