"""forget: erase users from every table that holds their rows, and keep them out of later ingests.

Their rows leave events, quarantine, recommendations, assignments, new_items and the per-user
evaluation. Only the partitions holding them are rewritten (the others are linked in unchanged),
and every table switches in one transaction together with the erasure list: a run killed
part-way leaves each table as it was before or as it is after, and the next command completes an
interrupted switch. The kept earlier versions of those tables (`output.keep_versions`) are
removed: they hold the rows too. The saved model is rewritten without the users' ids, factors and
seen pairs; its MLflow run is tagged `trained_on_erased_data` and what it logged is replaced
(registry.replace_erased_model). Recommend and the items job read the erasure list as well, so
nobody on it is served even from an older model.
"""

from __future__ import annotations

import logging

from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.errors import RecsysError
from recsys_spark.events.privacy import digest, erased_ids, pseudonym_key, table_id
from recsys_spark.events.validation import CORRUPT
from recsys_spark.infra.filesystem import SUCCESS, local_dir, path_exists
from recsys_spark.infra.tables import Transaction, read_table, transaction
from recsys_spark.infra.versions import drop_kept_versions
from recsys_spark.mlops import registry, tracking
from recsys_spark.recs.model import remove_users
from recsys_spark.results import ForgetResult

log = logging.getLogger("recsys_spark")

# (table, partition column or None): the tables holding rows per user, user ids in `user_id`
# (quarantine: in the raw user column, as it came in).
USER_TABLES = (
    (names.EVENTS, names.EVENT_DATE),
    (names.QUARANTINE, names.QUARANTINE_DATE),
    (names.RECOMMENDATIONS, names.RUN_DATE),
    (names.ASSIGNMENTS, names.RUN_DATE),
    (names.NEW_ITEMS, names.RUN_DATE),
    (names.PER_USER, None),
)


def read_users_file(path: str) -> list[str]:
    """One user id per line; blank lines are skipped."""
    try:
        with open(path, encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise RecsysError(
            f"cannot read --users-file {path}: {e.strerror}; give a text file with one user id per line"
        ) from None


def forget(spark: SparkSession, cfg: Config, users: list[str]) -> ForgetResult:
    if not users:
        raise RecsysError("forget needs user ids: --users a,b or --users-file PATH (one id per line)")
    key = pseudonym_key(cfg.privacy)
    ids = sorted({table_id(key, u) for u in users})
    wanted = spark.createDataFrame([(i,) for i in ids], "_forget_id string")
    listed = erased_ids(spark, cfg)
    new = wanted.select(digest(F.col("_forget_id")).alias("id_sha256"), F.current_timestamp().alias("erased_at"))
    erasure_list = new if listed is None else listed.unionByName(new.join(listed, "id_sha256", "left_anti"))
    removed: dict[str, int] = {}
    with transaction(spark) as tx:
        tx.write_table(erasure_list, cfg.erasure_list)  # staged first: a killed run still has its users listed
        for name, part in USER_TABLES:
            n = _remove_rows(tx, cfg, name, part, wanted)
            if n is not None:
                removed[name] = n
                log.info("[forget] %s: %d rows removed", name, n)
    versions = sum(drop_kept_versions(cfg.path(name)) for name, _ in USER_TABLES)
    unmatchable = _unmatchable_lines(spark, cfg)
    listed_now = read_table(spark, cfg.erasure_list).count()
    model_users, model_run, tagged, replaced = _remove_from_model(spark, cfg, wanted)
    if model_users:
        log.info("[forget] model: %d users' factors and seen pairs removed", model_users)
    return ForgetResult(
        users=len(ids),
        rows_removed=removed,
        listed=listed_now,
        versions_removed=versions,
        unmatchable_lines=unmatchable,
        model_users_removed=model_users,
        model_run=model_run,
        model_run_tagged=tagged,
        mlflow_replaced=replaced,
        paths={"erasure_list": cfg.erasure_list},
    )


def _user_match(cfg: Config, name: str, df: DataFrame) -> Column | None:
    """The condition matching a row of table `name` to `_forget_id` (None: the table has no user column).

    The quarantine keeps ids as they came in, and a malformed line (`_corrupt_record`) has no
    parsed user: it matches when the id appears in its text as a whole word. A pseudonymized root
    keeps such a line only as its keyed hash, which no id can match (`forget` reports them)."""
    column = cfg.input.columns["user_id"] if name == "quarantine" else "user_id"
    by_id = F.trim(F.col(column).cast("string")) == F.col("_forget_id") if column in df.columns else None
    if name != "quarantine" or CORRUPT not in df.columns or cfg.privacy.pseudonymize:
        return by_id
    word = F.concat(F.lit(r"(?<![A-Za-z0-9_.:/-])\Q"), F.col("_forget_id"), F.lit(r"\E(?![A-Za-z0-9_.:/-])"))
    by_text = F.coalesce(F.regexp_like(F.col(CORRUPT), word), F.lit(False))
    return by_text if by_id is None else (by_id | by_text)


def _unmatchable_lines(spark: SparkSession, cfg: Config) -> int:
    """Malformed lines in a pseudonymized quarantine: kept as keyed hashes, no id can match them."""
    path = cfg.path(names.QUARANTINE)
    if not cfg.privacy.pseudonymize or not path_exists(spark, path):
        return 0
    try:
        df = read_table(spark, path)
    except AnalysisException:
        return 0
    return df.where(F.col(CORRUPT).isNotNull()).count() if CORRUPT in df.columns else 0


def _remove_rows(tx: Transaction, cfg: Config, name: str, part: str | None, wanted: DataFrame) -> int | None:
    """Stage table `name` without the wanted users' rows, rewriting only the partitions that held
    them; rows removed (None when the table does not exist)."""
    spark, path = wanted.sparkSession, cfg.path(name)
    if not path_exists(spark, path):
        return None
    try:
        df = read_table(spark, path, merge_schema=True)  # a rewritten partition keeps columns newer than its files
    except AnalysisException as e:
        if e.getCondition() == "UNABLE_TO_INFER_SCHEMA":  # written with no rows (a clean input's quarantine)
            return 0
        raise
    match = _user_match(cfg, name, df)
    if match is None:
        return None
    # One scan counts, per partition, its rows and the wanted users' rows: what to rewrite, and how many rows stay.
    hit = F.broadcast(wanted.withColumn("_hit", F.lit(1)))
    key = [F.col(part).cast("string").alias("_part")] if part else []
    counts = (
        df.join(hit, match, "left")
        .groupBy(*key)
        .agg(F.count(F.lit(1)).alias("rows"), F.count("_hit").alias("hits"))
        .where(F.col("hits") > 0)
        .collect()
    )  # one row per touched partition (per date)
    n = sum(r["hits"] for r in counts)
    if not n:
        return 0
    expected = sum(r["rows"] for r in counts) - n
    if part is None:
        tx.write_table(df.join(F.broadcast(wanted), match, "left_anti"), path, expected_rows=expected)
    else:
        touched = [r["_part"] for r in counts]
        kept = df.where(F.col(part).cast("string").isin(touched)).join(F.broadcast(wanted), match, "left_anti")
        tx.write_table(kept, path, part, expected_rows=expected, replaces=[f"{part}={v}" for v in touched])
    return n


def _remove_from_model(spark: SparkSession, cfg: Config, wanted: DataFrame) -> tuple[int, str | None, bool, list[str]]:
    """Rewrite the saved models without these users (`<output.root>/model` and a local
    `recommend.model`; their kept versions dropped); where one held any, tag its MLflow run and
    replace what that run logged (registry.replace_erased_model). (users removed, that run's id,
    whether it was tagged, what was done in MLflow, a line each)."""
    total, first_run, tagged_any, lines = 0, None, False, []
    forget_run = tracking.current_run_id()
    for path in dict.fromkeys([cfg.path(names.MODEL), cfg.model_path]):
        if path.startswith(("runs:/", "models:/", "mlflow-artifacts:/")):
            lines.append(f"{path}: an MLflow model URI, not rewritten (forget rewrites the model directories)")
            continue
        if not path_exists(spark, f"{path}/{SUCCESS}"):
            continue
        n, config = remove_users(spark, path, wanted.withColumnRenamed("_forget_id", "user_id"), forget_run)
        drop_kept_versions(path)
        if not n:
            continue
        total += n
        run_id = (config or {}).get("mlflow_run_id")
        tagged = tracking.tag_run(run_id, {"trained_on_erased_data": "true"})
        tracking.log_tags({"trained_on_erased_data_run": run_id or "unknown"})
        if tagged:  # the run that logged this model, and every run that logged an earlier rewrite of it
            for logged_by in dict.fromkeys([run_id, *(config or {}).get("rewritten_from_runs", [])]):
                lines += registry.replace_erased_model(logged_by, local_dir(spark, path))
        first_run = first_run or run_id or "unknown (the model was saved without a run id)"
        tagged_any = tagged_any or tagged
    for line in lines:
        log.info("[forget] %s", line)
    return total, first_run, tagged_any, lines
