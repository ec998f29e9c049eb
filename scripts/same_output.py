"""Do two output roots hold the same tables? For a refactor that must change no behaviour: run the
pipeline before and after into two roots, then

    .venv/bin/python scripts/same_output.py ROOT_BEFORE ROOT_AFTER [--ignore run_id]

Every Parquet table under either root (a folder holding .parquet files, partitions included;
`.versions` history skipped) is read with Spark and compared by `exceptAll` both ways, as rows
with multiplicity; `--ignore` drops columns that differ by design (a run's random id, a trial's
seconds), and the quarantine's `_source` is compared as its raw partition folder. Prints
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--ignore", action="append", default=[], help="a column to leave out (repeatable)")
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
        x, y = (same_source(t.drop(*args.ignore)) for t in (x, y))
        if sorted(x.columns) != sorted(y.columns):
            print(f"{name}: columns differ: {sorted(x.columns)} vs {sorted(y.columns)}")
            bad += 1
            continue
        y = y.select(*x.columns)
        only_before, only_after = x.exceptAll(y).count(), y.exceptAll(x).count()
        same = only_before == 0 and only_after == 0
        bad += not same
        print(
            f"{name}: {x.count():,} rows, "
            + ("same" if same else f"{only_before} only before, {only_after} only after")
        )
    spark.stop()
    print(f"{len(a | b)} tables, {bad} differ")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
