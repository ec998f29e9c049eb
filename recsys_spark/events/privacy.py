"""Pseudonymous user ids and erasure: what every job shares of the privacy promise.

With `privacy.pseudonymize`, ingest replaces every user id by HMAC-SHA256(key, id) before
anything is written, so all tables downstream (events, quarantine, interactions, the model's id
maps, recommendations, evaluation, retention) and the MLflow artifacts made from them hold
pseudonyms only. The key is read from the environment variable `privacy.key_env`, never from
config, and is never logged or written. The hash runs in a pandas UDF (Python's `hmac`) rather
than as Spark's `sha2` over the key's bytes: a key in a SQL expression would be a literal in the
query plan, hence in the Spark UI, `explain()` output and event logs.

Erasure keeps a list of SHA-256 digests of erased users' ids as the tables hold them (the
pseudonym when pseudonymizing), so the list itself holds no readable id; ingest drops matching
rows before writing, and recommend serves nobody on it. The list matches the `pseudonymize`
setting it was written under, so the output root records that setting (with a fingerprint of the
key, never the key) at its first command, and every later command that disagrees is refused
before it writes a row: raw ids in a pseudonymized table, or digests that match nobody, otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from recsys_spark.config import Config, PrivacyConfig
from recsys_spark.errors import RecsysError
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.paths import local_path
from recsys_spark.infra.tables import read_table
from recsys_spark.infra.versions import write_atomically

MIN_KEY_CHARS = 16
SETTING = "_privacy.json"  # in the output root: {"pseudonymize": bool, "key_fingerprint": str | None}


def pseudonym_key(cfg: PrivacyConfig) -> bytes | None:
    """The HMAC key when pseudonymizing (None when not); refuse to go on without a usable one."""
    if not cfg.pseudonymize:
        return None
    value = os.environ.get(cfg.key_env, "")
    if len(value) < MIN_KEY_CHARS:
        state = "is not set" if not value else f"holds only {len(value)} characters"
        raise RecsysError(
            f"privacy.pseudonymize is on but the environment variable {cfg.key_env} {state}: "
            f"export {cfg.key_env} with a secret of at least {MIN_KEY_CHARS} characters "
            f"(e.g. `export {cfg.key_env}=$(openssl rand -hex 32)`; keep it, "
            "lookups and erasure need the same key), or set privacy.pseudonymize=false"
        )
    return value.encode()


def key_fingerprint(key: bytes) -> str:
    """16 hex characters that tell two keys apart without revealing either."""
    return hmac.new(key, b"recsys-spark key fingerprint", hashlib.sha256).hexdigest()[:16]


def check_root_setting(root: str, cfg: PrivacyConfig, record: bool = True) -> None:
    """Refuse a command whose pseudonymization (or key) differs from what the output root was first
    written with; record the setting when the root has none yet (`record`). Local roots only."""
    path = local_path(root)
    if path is None:
        return
    key = pseudonym_key(cfg)
    now = {"pseudonymize": key is not None, "key_fingerprint": key_fingerprint(key) if key else None}
    file = path / SETTING
    try:
        was = json.loads(file.read_text())
    except FileNotFoundError:
        if record:
            path.mkdir(parents=True, exist_ok=True)
            write_atomically(file, json.dumps(now))
        return
    except ValueError:
        raise RecsysError(f"{file} is not valid JSON: restore it, or delete it if the tables are empty") from None
    if was.get("pseudonymize") != now["pseudonymize"]:
        held = "pseudonymized ids" if was.get("pseudonymize") else "raw user ids"
        fix = (
            f"pass --set privacy.pseudonymize=true with the key it was written with in {cfg.key_env}"
            if was.get("pseudonymize")
            else "pass --set privacy.pseudonymize=false"
        )
        flag = "true" if now["pseudonymize"] else "false"
        raise RecsysError(
            f"output.root {root} holds {held} but this command has privacy.pseudonymize={flag}: "
            f"{fix}, or use another output.root"
        )
    if was.get("key_fingerprint") != now["key_fingerprint"]:
        raise RecsysError(
            f"the key in {cfg.key_env} (fingerprint {now['key_fingerprint']}) is not the one output.root {root} "
            f"was written with (fingerprint {was.get('key_fingerprint')}): nothing would match; "
            f"export the original key in {cfg.key_env}"
        )


def pseudonym(key: bytes, user_id: str) -> str:
    """HMAC-SHA256 of the id, as 64 hex characters."""
    return hmac.new(key, user_id.encode(), hashlib.sha256).hexdigest()


def table_id(key: bytes | None, user_id: str) -> str:
    """A raw user id as the tables hold it: its pseudonym, or itself when not pseudonymizing."""
    return pseudonym(key, user_id) if key else user_id


def pseudonymized(column: Column, key: bytes) -> Column:
    """`column` (strings; nulls stay null) replaced by pseudonyms, in Arrow batches."""

    @F.pandas_udf("string")
    def _hmac(ids: pd.Series) -> pd.Series:
        return ids.map(lambda v: None if v is None else pseudonym(key, v))

    return _hmac(column.cast("string"))


def digest(column: Column) -> Column:
    """SHA-256 of a table-form id: what the erasure list stores."""
    return F.sha2(column.cast("string"), 256)


def erased_ids(spark: SparkSession, cfg: Config) -> DataFrame | None:
    """The erasure list (id_sha256, erased_at), or None when nobody was erased yet."""
    path = cfg.erasure_list
    return read_table(spark, path) if path_exists(spark, path) else None


ERASED = "_erased"


def without_erased(df: DataFrame, column: str, erased: DataFrame | None) -> DataFrame:
    """`df` without the rows whose `column` (a table-form user id) is on the erasure list."""
    return flag_erased(df, column, erased).where(~F.col(ERASED)).drop(ERASED)


def flag_erased(df: DataFrame, column: str, erased: DataFrame | None) -> DataFrame:
    """`df` with a boolean ERASED column: whether `column` (a table-form user id) is on the erasure
    list (false everywhere without a list), so one pass can both count and leave out those rows."""
    if erased is None:
        return df.withColumn(ERASED, F.lit(False))
    listed = erased.select(F.col("id_sha256").alias("_erased_digest")).distinct().withColumn(ERASED, F.lit(True))
    return (
        df.join(listed, digest(F.col(column)) == F.col("_erased_digest"), "left")
        .drop("_erased_digest")
        .withColumn(ERASED, F.coalesce(F.col(ERASED), F.lit(False)))
    )
