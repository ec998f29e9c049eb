"""lookup: one user's latest recommendations from the table, given the raw id.

With `privacy.pseudonymize` the table holds pseudonyms, so the id is hashed with the key first:
without the key nobody can find a person's rows, with it support staff can.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import Config
from recsys_spark.events.privacy import digest, erased_ids, pseudonym_key, table_id
from recsys_spark.infra.tables import read_table


def lookup(spark: SparkSession, cfg: Config, user: str) -> str:
    """The printable list: rank, item, score, source and why, of the latest run_date."""
    uid = table_id(pseudonym_key(cfg.privacy), user)
    shown = f"user {user}" + (f" (pseudonym {uid[:12]}...)" if uid != user else "")
    erased = erased_ids(spark, cfg)
    if erased is not None and not erased.where(F.col("id_sha256") == digest(F.lit(uid))).isEmpty():
        return f"{shown}: no recommendations: erased by forget (on the erasure list, so never served again)"
    recs = read_table(spark, cfg.path(names.RECOMMENDATIONS), merge_schema=True).where(F.col("user_id") == uid)
    latest = recs.agg(F.max("run_date")).first()[0]
    if latest is None:
        return (
            f"{shown}: no recommendations in {cfg.path('recommendations')} "
            "(a user the model never saw gets the popular list at the next recommend)"
        )
    rows = recs.where(F.col("run_date") == latest).orderBy("rank").collect()  # n rows
    why = "why" in rows[0].asDict()
    lines = [f"{shown}: {len(rows)} recommendations of {latest} (run {rows[0]['run_id']})"]
    lines += [
        f"  {r['rank']:>3}  {r['item_id']:<16} {r['score']:>9.4f}  {r['source']:<8}" + (f"  {r['why']}" if why else "")
        for r in rows
    ]
    return "\n".join(lines)
