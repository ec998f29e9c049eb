"""Fit, tune and evaluate ALS (and EASE) beside the popularity baseline, and decide what model serves.

Everything here takes DataFrames of indexed interactions (user_idx, item_idx, confidence); what
comes back to the driver is one row of means per model (and per history cohort) and one row per
tuning trial.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.recommendation import ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.infra.timing import Stopwatch
from recsys_spark.names import ALS, EASE
from recsys_spark.recs import ease
from recsys_spark.recs.ease import EaseEvaluation, Setting, Weights, best_setting, evaluate_ease, validation_scores
from recsys_spark.recs.evaluation import (
    HISTORY_COHORTS,
    ItemMeasures,
    beyond_accuracy,
    by_history,
    per_user_metrics,
    relevant_items,
    summarize,
)
from recsys_spark.recs.interactions import IndexedInteractions
from recsys_spark.recs.kernels import ListRules
from recsys_spark.recs.model import fit_als, fit_params
from recsys_spark.recs.split import Splits
from recsys_spark.recs.topn import als_top_n, popularity, top_n_popular
from recsys_spark.recs.tuning import TuningData, sample_metric, search, tuning_data

log = logging.getLogger("recsys_spark")


@dataclass
class Evaluation:
    metrics: dict[str, float]  # ALS metrics, then the same with `baseline_`
    per_user: DataFrame  # user_idx, n_relevant, hits, precision, recall, ndcg, map, hit_rate (ALS), new_in_list
    by_history: list[dict[str, Any]]  # per history cohort: history, users, ALS metrics, baseline_ metrics
    ruled: dict[str, float] = field(default_factory=dict)  # ALS metrics under recommend's item rules, `rules_`


def evaluate(
    model: ALSModel,
    train: DataFrame,
    test: DataFrame,
    k: int,
    baseline: bool = True,
    new_below: int = 5,
    rules: ListRules | None = None,
) -> Evaluation:
    """Metrics@k of `model` (and unless `baseline` is false, of the popularity baseline) on the
    users with training history and a new test item, overall and by cohort of history length.
    `per_user` also says whether the user's list held a new item: one fewer than `new_below`
    training users used (retention compares their follow-up with the others'). With `rules`
    (recommend's item rules: filters, candidates, the cap) the same users' lists under them too, as
    `ruled`: what the rules cost in accuracy and what the cap buys in diversity."""
    keep = StorageLevel.MEMORY_AND_DISK
    relevant = relevant_items(train, test).persist(keep)
    users = relevant.select("user_idx").distinct()
    if users.isEmpty():
        relevant.unpersist()
        raise RecsysError(
            "the test period has no users with training history and a new item: "
            "widen split.test_days or move split.cutoff earlier"
        )
    sizes = train.agg(F.countDistinct("item_idx").alias("items"), F.countDistinct("user_idx").alias("users")).first()
    n_catalog, n_train_users = sizes["items"], sizes["users"]
    seen = train.select("user_idx", "item_idx")
    recs = als_top_n(model, users, seen, k).persist(keep)
    pop = popularity(train)
    with_new = (
        recs.where(F.col("rank") <= k)
        .join(pop.where(F.col("popularity") < new_below), "item_idx")
        .select("user_idx")
        .distinct()
    )
    per_user = (
        per_user_metrics(recs, relevant, k)
        .join(with_new.withColumn("new_in_list", F.lit(True)), "user_idx", "left")
        .fillna(False, ["new_in_list"])
        .persist(keep)
    )
    metrics = summarize(per_user, recs, n_catalog, k)  # materialises the cached per_user
    measures = ItemMeasures.of(model.itemFactors, pop, n_train_users)  # diversity by ALS item factors, for both models
    metrics |= beyond_accuracy(recs, measures, k)
    cohorts = {r["history"]: r for r in by_history(per_user, train, k)}
    recs.unpersist()
    ruled: dict[str, float] = {}
    if rules is not None:
        under = als_top_n(model, users, seen, k, rules=rules).persist(keep)  # read by three measures
        ruled = summarize(per_user_metrics(under, relevant, k), under, n_catalog, k, prefix="rules_")
        ruled |= beyond_accuracy(under, measures, k, prefix="rules_")
        under.unpersist()
    if baseline:
        base = top_n_popular(users, pop, seen, k).persist(keep)  # read twice by summarize
        base_user = per_user_metrics(base, relevant, k)
        metrics |= summarize(base_user, base, n_catalog, k, prefix="baseline_")
        metrics |= beyond_accuracy(base, measures, k, prefix="baseline_")
        for r in by_history(base_user, train, k, prefix="baseline_"):
            cohorts[r["history"]] |= r
        base.unpersist()
    relevant.unpersist()
    return Evaluation(metrics, per_user, [cohorts[c] for c in HISTORY_COHORTS if c in cohorts], ruled)


@dataclass
class EaseChoice:
    """EASE's side of a run: the chosen setting and every setting's validation score, its test
    evaluation, and, when it serves, its B fitted on the serving pairs."""

    setting: Setting
    validation: dict[Setting, float]  # setting -> validation tune.metric@k
    evaluation: EaseEvaluation
    served: Weights | None = None  # fitted on the serving pairs, when EASE serves


@dataclass
class Trained:
    """What training produced: the evaluation of the model fitted before the cutoff, the chosen
    parameters, the tuning rows, the family that serves (and both families' validation scores),
    and the model that serves with the pairs it must not recommend."""

    evaluation: Evaluation
    chosen: dict[str, Any]
    tuning: list[dict[str, Any]]
    served: ALSModel  # the ALS model (refit on all pairs when ALS serves and train.refit_on_all)
    seen: DataFrame  # user_idx, item_idx, ... of the pairs the served model is fitted on
    family: str = ALS  # what serves: als or ease
    validation: dict[str, float] = field(default_factory=dict)  # family -> validation tune.metric@k
    ease: EaseChoice | None = None

    def test_metrics(self) -> dict[str, float]:
        """The serving family's test metrics under ALS's names (EASE's without its prefix)."""
        if self.family == EASE and self.ease is not None:
            return {m.removeprefix("ease_"): v for m, v in self.ease.evaluation.metrics.items()}
        return {m: v for m, v in self.evaluation.metrics.items() if not m.startswith("baseline_")}

    def test_per_user(self) -> DataFrame:
        """The serving family's per-user test metrics."""
        return self.ease.evaluation.per_user if self.family == EASE and self.ease else self.evaluation.per_user

    def release(self) -> None:
        self.evaluation.per_user.unpersist()
        if self.ease is not None:
            self.ease.evaluation.per_user.unpersist()


def serving_pairs(splits: Splits, data: IndexedInteractions, refit_on_all: bool) -> DataFrame:
    """The pairs the served model is fitted on: all interactions (refit), or the training side."""
    return data.pairs if refit_on_all else splits.train


def pick_family(family: str, validation: dict[str, float]) -> str:
    """`family` unless it is auto; auto: the family with the better validation score (a tie, or
    EASE not scored: ALS).

    >>> pick_family("auto", {"als": 0.20, "ease": 0.25}), pick_family("auto", {"als": 0.2, "ease": 0.2})
    ('ease', 'als')
    """
    if family != "auto":
        return family
    return EASE if validation.get(EASE, float("-inf")) > validation.get(ALS, float("-inf")) else ALS


def fit_and_evaluate(
    splits: Splits,
    data: IndexedInteractions,
    cfg: Config,
    clock: Stopwatch | None = None,
    rules: ListRules | None = None,
) -> Trained:
    """Tune (if enabled) on the validation slice, fit on the training side, evaluate on the test
    side beside popularity (and under recommend's item `rules`); with model.family ease or auto,
    EASE's settings (λ x dropout) on the same validation users and its test evaluation on the same
    test users; then fit what serves on the serving pairs."""
    clock = clock or Stopwatch("train")
    implicit, k = cfg.interactions.mode == "implicit", cfg.train.k
    key = f"{cfg.tune.metric}_at_{k}"
    params: dict[str, Any] = {}
    tuning: list[dict[str, Any]] = []
    validation: dict[str, float] = {}
    settings: dict[Setting, float] = {}
    if cfg.tune.enabled or cfg.model.family != ALS:
        clock.start("tune")
        if splits.tune_train.persist(StorageLevel.MEMORY_AND_DISK).isEmpty():
            raise RecsysError(
                "tuning has no training data before the validation slice "
                f"({cfg.tune.validation_days} days before the cutoff): "
                "lower tune.validation_days or split.test_days, or set tune.enabled=false and model.family=als"
            )
        data_t = tuning_data(splits.tune_train, splits.tune_val, cfg.tune)
        log.info(
            "[train] tuning data ready: %d sampled validation users, %d of them in the first rung (%.1f s)",
            len(data_t.users),
            int(data_t.users["in_rung"].sum()),
            clock.elapsed(),
        )
        try:
            if cfg.tune.enabled:
                params, tuning = search(data_t, cfg.als, cfg.tune, implicit, k)
                validation[ALS] = max(r[key] for r in tuning if r["state"] == "complete")
                log.info("[train] best trial: %s", params)
            if cfg.model.family != ALS:
                if not cfg.tune.enabled and cfg.model.family == "auto":  # auto compares: ALS needs a score
                    validation[ALS] = sample_metric(
                        fit_als(data_t.pairs, cfg.als, implicit), data_t, k, cfg.tune.metric
                    )
                clock.start("ease")
                settings = ease_validation(data_t, cfg, data.items.count())
                if settings:
                    validation[EASE] = max(settings.values())
        finally:
            data_t.release()
    family = pick_family(cfg.model.family, validation)
    if len(validation) == 2:
        log.info(
            "[train] model.family=%s: %s serves (validation %s: ALS %.4f, EASE %.4f)",
            cfg.model.family,
            family.upper(),
            key,
            validation[ALS],
            validation[EASE],
        )
    clock.start("als_fit")
    model = fit_als(splits.train, cfg.als, implicit, **params)
    clock.start("evaluate")
    evaluation = evaluate(model, splits.train, splits.test, k, new_below=cfg.new_items.min_users, rules=rules)
    seen = serving_pairs(splits, data, cfg.train.refit_on_all)
    ease_choice = None
    if settings:
        clock.start("ease_evaluate")
        best = best_setting(settings)
        ease_choice = EaseChoice(
            best, settings, evaluate_ease(splits.train, splits.test, best, k, cfg.ease.max_items, rules)
        )
        log.info(
            "[train] EASE λ %s: %s %.4f on the test split",
            best.label,
            key,
            ease_choice.evaluation.metrics[f"ease_{key}"],
        )
    served = model
    if family == EASE and ease_choice is not None:
        clock.start("ease_fit")
        ease_choice.served = ease.fit(seen, ease_choice.setting, cfg.ease.max_items)
    elif cfg.train.refit_on_all:
        clock.start("refit")
        served = fit_als(seen, cfg.als, implicit, **params)
    chosen = fit_params(cfg.als, **params)
    return Trained(evaluation, chosen, tuning, served, seen, family, validation, ease_choice)


def ease_validation(data_t: TuningData, cfg: Config, n_items: int) -> dict[Setting, float]:
    """EASE's validation score per setting (each λ with each dropout), or nothing when model.family
    is auto and the whole catalogue (`n_items`: the largest EASE would fit, on all pairs) is above
    ease.max_items (said in the log with the figure; model.family=ease refuses instead)."""
    try:
        ease.check_catalogue(n_items, cfg.ease.max_items)
    except RecsysError as e:
        if cfg.model.family != "auto":
            raise
        log.warning("[train] model.family=auto skips EASE: %s", e)
        return {}
    grid = [Setting(lam, p) for p in cfg.ease.dropouts for lam in cfg.ease.lambdas]
    return validation_scores(data_t, grid, cfg.train.k, cfg.tune.metric, cfg.ease.max_items)
