"""The control arm: which users are held out of personalised recommendations.

A user is in `control` when u(salt, id) < fraction, where u is the first 52 bits of
SHA-256(salt + 0x1f + id) read as a number in [0, 1). The assignment needs no state: the same
user stays in the same arm across runs (and jobs, and the Spark-free code) while the salt is the
same, and a new salt draws a fresh split. It hashes the id as the tables hold it (the pseudonym
when pseudonymizing), so it is independent of pseudonymization. The salt appears in the query
plan (Spark UI, on loopback in local mode); MLflow gets `salt_id`, a digest of it, never the salt.
"""

from __future__ import annotations

import hashlib

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from recsys_spark.config import HoldoutConfig

TREATMENT, CONTROL = "treatment", "control"
BITS = 52  # 13 hex digits: exact in a double


def salt_id(salt: str | None) -> str:
    """A short digest that says which salt assigned a run's arms, without revealing it."""
    return hashlib.sha256(f"recsys-spark salt id\x1f{salt or ''}".encode()).hexdigest()[:12]


def unit(salt: str, user_id: str) -> float:
    """u(salt, id) in [0, 1), in plain Python: the same number `arm` computes in Spark."""
    digest = hashlib.sha256(f"{salt}\x1f{user_id}".encode()).hexdigest()
    return int(digest[: BITS // 4], 16) / 2**BITS


def arm_of(h: HoldoutConfig, user_id: str) -> str:
    """The arm of one user in plain Python (the serving side's twin of `arm`).

    >>> h = HoldoutConfig(fraction=0.5, salt="s")
    >>> [arm_of(h, u) for u in ("u1", "u2", "u3")] == [arm_of(h, u) for u in ("u1", "u2", "u3")]  # stable
    True
    >>> arm_of(HoldoutConfig(fraction=0.0), "u1")  # no holdout: everyone is treated
    'treatment'
    """
    return CONTROL if h.fraction > 0 and unit(h.salt or "", user_id) < h.fraction else TREATMENT


def arm(h: HoldoutConfig, user_id: Column) -> Column:
    """The arm of each `user_id` (a string column) as a column."""
    if h.fraction <= 0:
        return F.lit(TREATMENT)
    digest = F.sha2(F.concat(F.lit(f"{h.salt}\x1f"), user_id.cast("string")), 256)
    u = F.conv(F.substring(digest, 1, BITS // 4), 16, 10).cast("double") / F.lit(float(2**BITS))
    return F.when(u < F.lit(h.fraction), F.lit(CONTROL)).otherwise(F.lit(TREATMENT))


def assign_arms(users: DataFrame, h: HoldoutConfig, column: str = "user_id") -> DataFrame:
    """`users` with an `arm` column."""
    return users.withColumn("arm", arm(h, F.col(column)))
