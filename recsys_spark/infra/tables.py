"""The table layer: reading and writing tables so that readers never see a half-written one.

On a local filesystem (a plain path or `file://`) a table's path is a symbolic link to a complete
version directory kept beside it, `<parent>/.versions/<name>/v<time>-<id>`. A write builds a new
version (for a partial write, the partitions it does not touch are hard-linked in from the
current version, so nothing is copied), checks its row count, then switches the link with one
`rename`, which POSIX makes atomic: any reader, ours or pandas, sees the whole previous version
or the whole new one. Several tables that must change together (ingest's events and quarantine)
commit through a journal that names every switch; a run killed between two switches leaves the
journal, and `recover` (run at the start of every command) completes it. The previous
`output.keep_versions` versions stay, older and orphaned ones are removed on success.

On other filesystems (hdfs://, s3a://) tables are staged and moved into place with the Hadoop
FileSystem API: a failure before the move changes nothing, but the move itself is not atomic.
Delta Lake or Iceberg would fit behind this module where their jars can be had.
Readers refuse a table without the `_SUCCESS` marker.

This module is the table API both share; `versions` holds the local versioned tables (plain
Python, no Spark) and `filesystem` the Hadoop FileSystem calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType

from recsys_spark.errors import RecsysError
from recsys_spark.infra import versions
from recsys_spark.infra.filesystem import FS, SUCCESS, drop_staging, replace_partitions, replace_table, staging
from recsys_spark.infra.paths import local_path

# Previous versions kept per table: the session carries output.keep_versions (the job runner sets it).
KEEP_VERSIONS_KEY = "spark.recsys.keepVersions"


def keep_versions(spark: SparkSession) -> int:
    return int(spark.conf.get(KEEP_VERSIONS_KEY, "1"))


def set_keep_versions(spark: SparkSession, keep: int) -> None:
    """How many previous versions of each table the writes of this session keep (output.keep_versions)."""
    spark.conf.set(KEEP_VERSIONS_KEY, str(keep))


class Transaction:
    """Tables staged as new versions, switched in together by `commit` (local disk), or moved into
    place one by one (other filesystems). Leaving the `transaction` block by an error drops what
    was staged and changes nothing."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.staged: list[tuple[Path, Path]] = []  # (table link, new version dir)

    @contextmanager
    def staged_dir(self, path: str) -> Iterator[str]:
        """A fresh directory to write a whole table into; `commit` makes it the table at `path`."""
        local = local_path(path.rstrip("/"))
        if local is None:
            base, staged = staging(path)
            fs = FS(self.spark, base)
            try:
                yield staged
                fs.touch(f"{staged}/{SUCCESS}")
                replace_table(fs, staged, base)
            finally:
                drop_staging(fs, staged)
            return
        version = versions.new_version(local)
        try:
            yield str(version)
            (version / SUCCESS).touch()
        except BaseException:
            versions.remove(version)
            raise
        self.staged.append((local, version))

    def write_table(
        self,
        df: DataFrame,
        path: str,
        partition_by: str | None = None,
        expected_rows: int | None = None,
        whole_table: bool = False,
        replaces: list[str] | None = None,
    ) -> None:
        """Stage `df` as Parquet for `path`: the partitions it holds replace theirs (or the whole table).

        `replaces` names partition directories (`event_date=2026-01-05`) replaced even where `df`
        holds no row of them, so a partition can be emptied. `expected_rows` is checked against
        what was staged before anything is switched in.
        """
        local = local_path(path.rstrip("/"))
        if local is None:
            return _write_moved(df, path, partition_by, expected_rows, whole_table, replaces or [])
        with self.staged_dir(path) as version:
            _write_parquet(df, version, partition_by, expected_rows, path)
            if partition_by and not whole_table:
                versions.link_untouched_partitions(local, Path(version), set(replaces or []))

    def commit(self) -> None:
        """Switch every staged table in: one atomic rename per table, under a journal when there are several."""
        if self.staged:
            versions.commit(self.staged, keep_versions(self.spark))
        self.staged = []


@contextmanager
def transaction(spark: SparkSession) -> Iterator[Transaction]:
    tx = Transaction(spark)
    try:
        yield tx
        versions.passing("staged")
        tx.commit()
    except BaseException:
        for _, version in tx.staged:
            versions.remove(version)
        raise


@contextmanager
def staged_dir(spark: SparkSession, path: str) -> Iterator[str]:
    """Yield a directory to write a whole table into; on success it becomes the table at `path`."""
    with transaction(spark) as tx, tx.staged_dir(path) as tmp:
        yield tmp


def write_table(
    df: DataFrame,
    path: str,
    partition_by: str | None = None,
    expected_rows: int | None = None,
    whole_table: bool = False,
) -> None:
    """Write `df` as Parquet at `path` (one table, one transaction); see `Transaction.write_table`."""
    with transaction(df.sparkSession) as tx:
        tx.write_table(df, path, partition_by, expected_rows, whole_table)


def _write_parquet(df: DataFrame, out: str, partition_by: str | None, expected_rows: int | None, table: str) -> None:
    spark = df.sparkSession
    if partition_by:  # one file per partition value, not one per task and value
        df = df.repartition(partition_by)
    writer = df.write.mode("overwrite")
    if partition_by:
        writer = writer.partitionBy(partition_by)
    writer.parquet(out)
    if expected_rows is not None:
        staged = spark.read.schema(df.schema).parquet(out).count()
        if staged != expected_rows:
            raise RecsysError(
                f"{table.rstrip('/')}: staged {staged} rows but expected {expected_rows}; nothing was moved into place"
            )


def _write_moved(
    df: DataFrame,
    path: str,
    partition_by: str | None,
    expected_rows: int | None,
    whole_table: bool,
    replaces: list[str],
) -> None:
    """Other filesystems: stage beside the table, then move into place (not atomic)."""
    fs = FS(df.sparkSession, path)
    base, staged = staging(path)
    try:
        _write_parquet(df, staged, partition_by, expected_rows, path)
        if partition_by and not whole_table:
            replace_partitions(fs, staged, base, replaces)
        else:
            replace_table(fs, staged, base)
    finally:
        drop_staging(fs, staged)


def read_table(
    spark: SparkSession, path: str, empty: StructType | None = None, merge_schema: bool = False
) -> DataFrame:
    """Read a table written by `write_table`; refuse one that is missing or was not completed.

    A versioned table is read from the version its link points to now, so a switch during a
    long read cannot mix two versions. A partitioned table written with no rows has no file to
    take a schema from: with `empty`, it reads as no rows of that schema (else Spark's error).
    `merge_schema`: the union of every file's columns (a column added later reads as null in
    older partitions; without it Spark takes one file's schema)."""
    fs = FS(spark, path)
    if not fs.exists(path):
        raise RecsysError(f"table not found: {path} (run the job that writes it first)")
    if not fs.exists(f"{path.rstrip('/')}/{SUCCESS}"):
        raise RecsysError(
            f"table {path} has no {SUCCESS} marker: it was not completely written; re-run the job that writes it"
        )
    local = local_path(path.rstrip("/"))
    version = versions.current_version(local) if local is not None else None
    try:
        return spark.read.option("mergeSchema", merge_schema).parquet(str(version) if version else path)
    except AnalysisException as e:
        if empty is None or e.getCondition() != "UNABLE_TO_INFER_SCHEMA":
            raise
        return spark.createDataFrame([], empty)
