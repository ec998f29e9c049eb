"""Do two output roots hold the same tables? For a refactor that must change no behaviour: run the
pipeline before and after into two roots, then

    .venv/bin/python scripts/same_output.py ROOT_BEFORE ROOT_AFTER [--ignore run_id]

Every Parquet table under either root (a folder holding .parquet files, partitions included;
`.versions` history skipped) is read with Spark and compared by `exceptAll` both ways, as rows
with multiplicity; `--ignore` drops columns that differ by design (a run's random id, a trial's
seconds), `--digits` rounds floats first, and the quarantine's `_source` is compared as its raw
partition folder. Prints
one line per table and exits 1 if any differs or exists on one side only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


def tables(root: Path) -> set[str]:
    """Relative paths of the Parquet tables under `root` (links followed, partition folders folded)."""
    found = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        rel = Path(folder).relative_to(root).parts
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(f.endswith(".parquet") for f in files):
            found.add("/".join(p for p in rel if "=" not in p))
    return found


def same_source(df: DataFrame) -> DataFrame:
    """The quarantine's `_source` (the raw file a row came from) as the raw partition folder only:
    the root and the part file's random name differ between any two runs."""
    if "_source" not in df.columns:
        return df
    return df.withColumn("_source", F.regexp_extract("_source", r"/(raw/[^/]+)/[^/]+$", 1))


def rounded(df: DataFrame, digits: int | None) -> DataFrame:
    """Float and double columns rounded to `digits` decimals (None: as they are). A float32 score
    can differ in its last bit between two runs of the same code: the matrix product's summation
    order follows how rows fall into Arrow batches."""
    if digits is None:
        return df
    kinds = {"float", "double"}
    return df.select(*[F.round(c, digits).alias(c) if t in kinds else F.col(c) for c, t in df.dtypes])


def float_gap(x: DataFrame, y: DataFrame) -> str | None:
    """When the rows pair up one to one on every column but the float and double ones: the largest
    absolute difference of each of those (None when they do not pair up)."""
    floats = [c for c, t in x.dtypes if t in ("float", "double")]
    keys = [c for c in x.columns if c not in floats]
    if not floats or not keys:
        return None
    other = y.select(*[F.col(c).alias(f"_after_{c}") for c in y.columns])
    pairs = x.join(other, [x[c].eqNullSafe(other[f"_after_{c}"]) for c in keys])  # null keys pair too
    n = x.count()
    if y.count() != n or pairs.count() != n:
        return None
    gaps = pairs.agg(*[F.max(F.abs(F.col(c) - F.col(f"_after_{c}"))).alias(c) for c in floats]).first()
    return ", ".join(f"{c} {gaps[c]:.3g}" for c in floats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--ignore", action="append", default=[], help="a column to leave out (repeatable)")
    p.add_argument("--digits", type=int, help="round float and double columns to this many decimals first")
    args = p.parse_args(argv)
    spark = SparkSession.builder.master("local[2]").config("spark.sql.shuffle.partitions", 2).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    a, b = tables(args.before.resolve()), tables(args.after.resolve())
    bad = 0
    for name in sorted(a | b):
        if name not in a or name not in b:
            print(f"{name}: only in {'after' if name not in a else 'before'}")
            bad += 1
            continue
        x, y = (spark.read.option("basePath", str(r / name)).parquet(str(r / name)) for r in (args.before, args.after))
        x, y = (rounded(same_source(t.drop(*args.ignore)), args.digits) for t in (x, y))
        if sorted(x.columns) != sorted(y.columns):
            print(f"{name}: columns differ: {sorted(x.columns)} vs {sorted(y.columns)}")
            bad += 1
            continue
        y = y.select(*x.columns)
        only_before, only_after = x.exceptAll(y).count(), y.exceptAll(x).count()
        same = only_before == 0 and only_after == 0
        verdict = "same" if same else f"{only_before} only before, {only_after} only after"
        if not same and (close := float_gap(x, y)) is not None:
            verdict += f"; matched on every other column, floats differ by at most {close}"
        bad += not same
        print(f"{name}: {x.count():,} rows, {verdict}")
    spark.stop()
    print(f"{len(a | b)} tables, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
