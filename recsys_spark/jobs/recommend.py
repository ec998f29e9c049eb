"""recommend: top-N per user from a saved model (seen excluded) to the recommendations table.

Users on the erasure list get no rows, whether asked for by --users or not: a forget stays in
force even for a model trained before it, or one whose directory was restored.

Every served user gets an arm (arms.py): `treatment` users get their recommendations, `control`
users (recommend.holdout.fraction of them) the control policy's list: the most popular items they
have not seen, or nothing. The `assignments` table (user_id, arm, run_id, run_date) records every
served user's arm, whatever the policy: with the recommendations it is the exposure log that
`effect` reads.

With recommend.fold_in (--fold-in), users with events newer than the model's data (new users
included) are served from their whole current history (recs/foldin.py): `source` als_fold_in or
ease_fold_in.

Every list, the control arm's and the fallback's included, obeys recommend's filters and cap
(recs/filters.py): items the filter, the candidate set or the exclusions rule out, and seen items
per recommend.exclude_seen, are removed before the top-N is cut.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.analytics.arms import CONTROL, TREATMENT, assign_arms, salt_id
from recsys_spark.analytics.drift import drift
from recsys_spark.config import Config
from recsys_spark.events.privacy import erased_ids, pseudonym_key, table_id, without_erased
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.tables import read_table, transaction
from recsys_spark.jobs.items import read_texts
from recsys_spark.mlops import registry, tracking
from recsys_spark.recs.filters import filters_for
from recsys_spark.recs.foldin import fresh_histories, fresh_lists, fresh_users
from recsys_spark.recs.model import TrainedModel, load_model
from recsys_spark.recs.topn import popular_lists, recommend_users
from recsys_spark.results import RecommendResult

log = logging.getLogger("recsys_spark")
CONTROL_WHY = "control group: the most popular items you have not seen (held out to measure what recommendations do)"


def recommend(
    spark: SparkSession, cfg: Config, run_id: str | None = None, touched: DataFrame | None = None
) -> RecommendResult:
    """`touched` (user_id, as the tables hold it: a stream batch's users): serve these users only,
    as --users does for raw ids, and with recommend.fold_in every one of them from their current
    history, whatever their events' dates."""
    path = cfg.model_path
    if path.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
        path = registry.download_model(path)
    model = load_model(spark, path)
    wanted = touched.select("user_id").distinct() if touched is not None else None
    if wanted is None and cfg.recommend.users:
        key = pseudonym_key(cfg.privacy)  # the tables hold pseudonyms: --users gives raw ids
        wanted = spark.createDataFrame([(table_id(key, u),) for u in cfg.recommend.users], "user_id string").distinct()
    users = wanted if wanted is not None else model.users.select("user_id")
    fresh = scored = None
    if cfg.recommend.fold_in:  # users with newer events: served from their whole current history
        fresh = fresh_histories(model, read_table(spark, cfg.path(names.EVENTS)), touched)
        if wanted is not None:
            fresh = fresh.join(wanted, "user_id", "left_semi")
        fresh = fresh.cache()
        scored = fresh_users(model, fresh).cache()
        log.info("[recommend] fold-in: %d users have events after the model's data", scored.count())
        if wanted is None:
            users = users.unionByName(fresh.select("user_id")).distinct()
    users = without_erased(users, "user_id", erased_ids(spark, cfg))
    h = cfg.recommend.holdout
    assigned = assign_arms(users, h).cache()
    run_id = run_id or tracking.current_run_id() or uuid.uuid4().hex
    day = cfg.recommend.run_date or dt.datetime.now(dt.UTC).date()
    labels = read_texts(spark, cfg).withColumnRenamed("text", "name") if cfg.text.path else None
    filters = filters_for(spark, cfg, model)
    treated, n = _in_arm(assigned, TREATMENT), cfg.recommend.n
    if scored is None:
        out = recommend_users(model, treated, n, labels, filters)
    else:
        out = recommend_users(model, treated.join(scored, "user_id", "left_anti"), n, labels, filters).unionByName(
            fresh_lists(model, fresh.join(treated, "user_id", "left_semi"), n, labels, filters)
        )
    out = out.withColumn("arm", F.lit(TREATMENT))
    if h.fraction > 0 and h.policy == "popular":
        control = popular_lists(model, _in_arm(assigned, CONTROL), n, filters)
        out = out.unionByName(control.withColumn("why", F.lit(CONTROL_WHY)).withColumn("arm", F.lit(CONTROL)))
    stamp = [F.lit(run_id).alias("run_id"), F.lit(day).alias("run_date")]
    out = out.select("*", F.lit(model.model_id).alias("model_id"), *stamp)
    # The run's fraction and salt id travel with its arms: effect checks the sample ratio against them.
    salt = salt_id(h.salt) if h.fraction > 0 else "none"
    assignments = assigned.select(
        "user_id", "arm", F.lit(float(h.fraction)).alias("fraction"), F.lit(salt).alias("salt_id"), *stamp
    )
    table, arms_table = cfg.path(names.RECOMMENDATIONS), cfg.path(names.ASSIGNMENTS)
    if wanted is not None:  # some users only: today's rows of everyone else stay (the partition is rewritten whole)
        out = _with_others(spark, table, day, wanted, out)
        assignments = _with_others(spark, arms_table, day, wanted, assignments)
    with transaction(spark) as tx:  # the served lists and the arms switch together
        tx.write_table(out, table, names.RUN_DATE)
        tx.write_table(assignments, arms_table, names.RUN_DATE)
    for df in (assigned, fresh, scored):
        if df is not None:
            df.unpersist()
    written, served = (read_table(spark, t).where(F.col("run_date") == F.lit(day)) for t in (table, arms_table))
    if wanted is not None:  # the counts of the users asked for, not of the day's whole partition
        written, served = written.join(wanted, "user_id", "left_semi"), served.join(wanted, "user_id", "left_semi")
    counts = {r["source"]: r["count"] for r in written.groupBy("source").count().collect()}
    arms = {r["arm"]: r["count"] for r in served.groupBy("arm").count().collect()}
    moved = _drift(spark, cfg, table, day, model) if wanted is None and cfg.drift.enabled else None
    before = {"drift.model_before": moved[3]} if moved and moved[3] else {}
    tracking.log_params(
        {"holdout.salt_id": salt, "drift.max_psi": cfg.drift.max_psi, "model_id": model.model_id, **before}
    )
    return RecommendResult(
        run_id=run_id,
        rows_by_source=counts,
        users_by_arm={TREATMENT: arms.get(TREATMENT, 0), CONTROL: arms.get(CONTROL, 0)},
        holdout_fraction=h.fraction,
        run_date=day,
        paths={"recommendations": table, "assignments": arms_table},
        drift=moved[0] if moved else None,
        drift_since=moved[1] if moved else None,
        drift_flagged=bool(moved) and moved[2],
        model_id=model.model_id,
        drift_model_before=moved[3] if moved else None,
    )


def _drift(
    spark: SparkSession, cfg: Config, table: str, day: dt.date, model: TrainedModel
) -> tuple[dict[str, float], dt.date, bool, str | None] | None:
    """The drift of today's treatment lists against those of the latest earlier serving date, that
    date, whether a PSI is above drift.max_psi (logged as a warning), and the models that served
    then (comma-separated; None: lists written before the table recorded them); None on the first run."""
    rows = read_table(spark, table, merge_schema=True).where(F.col("arm") == TREATMENT)
    before = rows.where(F.col("run_date") < F.lit(day)).agg(F.max("run_date")).first()[0]
    if before is None:
        return None
    on = {
        d: rows.where(F.col("run_date") == F.lit(d)).select("user_id", "item_id", "score", "source").cache()
        for d in (day, before)
    }
    # The models of the earlier lists (several when refreshes served some users from another model).
    ids = rows.where(F.col("run_date") == F.lit(before)).agg(F.array_sort(F.collect_set("model_id"))).first()[0]
    then = ", ".join(ids) if ids else None
    figures = drift(on[day], on[before], model.items.count())
    if then is not None:
        figures["model_changed"] = float(ids != [model.model_id])
    for df in on.values():
        df.unpersist()
    flagged = max(figures["psi_items"], figures["psi_scores"]) > cfg.drift.max_psi
    if flagged:
        log.warning(
            "[recommend] drift against %s: PSI %.3f (items) / %.3f (scores) is above drift.max_psi %.2f: "
            "check the model, the events and the filters before these lists serve",
            before,
            figures["psi_items"],
            figures["psi_scores"],
            cfg.drift.max_psi,
        )
    return figures, before, flagged, then


def _in_arm(assigned: DataFrame, name: str) -> DataFrame:
    return assigned.where(F.col("arm") == name).select("user_id")


def _with_others(spark: SparkSession, table: str, day: dt.date, wanted: DataFrame, rows: DataFrame) -> DataFrame:
    """`rows` with the other users' rows of `day` already in `table`."""
    if not path_exists(spark, f"{table}/run_date={day}"):
        return rows
    others = (  # merged schema: rows written before a column existed keep theirs as null
        read_table(spark, table, merge_schema=True)
        .where(F.col("run_date") == F.lit(day))
        .join(wanted, "user_id", "left_anti")
    )
    return others.select(*[c for c in rows.columns if c in others.columns]).unionByName(rows, allowMissingColumns=True)
