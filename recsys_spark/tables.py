"""Reading and writing tables so that readers never see a half-written one.

A table is written to a staging directory beside it, checked, then moved into place with the
Hadoop FileSystem API (so it works on local disk and on cluster storage alike). Partitioned tables
replace only the partitions this write produced; re-running a job overwrites, never duplicates.
Readers refuse a table without the `_SUCCESS` marker.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from .errors import RecsysError

SUCCESS = "_SUCCESS"


class _FS:
    """Thin wrapper over org.apache.hadoop.fs.FileSystem for one path's filesystem."""

    def __init__(self, spark: SparkSession, path: str):
        jvm = spark._jvm  # noqa: SLF001 - the Hadoop FS API is only reachable through py4j
        self._jvm = jvm
        self.path = jvm.org.apache.hadoop.fs.Path(path)
        self.fs = self.path.getFileSystem(spark._jsc.hadoopConfiguration())  # noqa: SLF001

    def p(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self.p(path)))

    def delete(self, path: str) -> None:
        if self.exists(path):
            self.fs.delete(self.p(path), True)

    def rename(self, src: str, dst: str) -> None:
        if not self.fs.rename(self.p(src), self.p(dst)):
            raise RecsysError(f"could not move {src} to {dst}; check permissions on the output root")

    def children(self, path: str) -> list[str]:
        return [s.getPath().getName() for s in self.fs.listStatus(self.p(path)) if s.isDirectory()]

    def touch(self, path: str) -> None:
        self.fs.create(self.p(path), True).close()

    def write_bytes(self, path: str, data: bytes) -> None:
        out = self.fs.create(self.p(path), True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def read_bytes(self, path: str) -> bytes:
        stream = self.fs.open(self.p(path))
        try:
            return bytes(self._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()


def list_names(spark: SparkSession, path: str) -> list[str]:
    """Names directly under `path` (partition dirs, files), without markers and hidden entries."""
    fs = _FS(spark, path)
    if not fs.exists(path):
        return []
    return sorted(n for n in (s.getPath().getName() for s in fs.fs.listStatus(fs.p(path))) if not n.startswith(("_", ".")))


def local_dir(spark: SparkSession, path: str) -> str:
    """`path` as a local directory: itself when local, else a copy in a temporary directory."""
    fs = _FS(spark, path)
    if fs.fs.getUri().getScheme() in (None, "file"):
        return path.removeprefix("file:")
    dst = tempfile.mkdtemp(prefix="recsys-")
    fs.fs.copyToLocalFile(False, fs.p(path), fs.p(dst), True)
    return f"{dst}/{path.rstrip('/').rsplit('/', 1)[-1]}"


def path_exists(spark: SparkSession, path: str) -> bool:
    return _FS(spark, path).exists(path)


def remove_dir(spark: SparkSession, path: str, parent_if_empty: str | None = None) -> None:
    """Delete `path` (a folder, recursively); then `parent_if_empty` too when nothing else is left in it."""
    _delete(_FS(spark, path), path, parent_if_empty)


def _delete(fs: _FS, path: str, parent_if_empty: str | None) -> None:
    fs.delete(path)
    if parent_if_empty and fs.exists(parent_if_empty) and not list(fs.fs.listStatus(fs.p(parent_if_empty))):
        fs.delete(parent_if_empty)


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """A small file (config YAML, a CSV of a few rows, a PNG) on any Hadoop filesystem."""
    _FS(spark, path).write_bytes(path, data)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    write_bytes(spark, path, text.encode())


def read_text(spark: SparkSession, path: str) -> str:
    fs = _FS(spark, path)
    if not fs.exists(path):
        raise RecsysError(f"file not found: {path}")
    return fs.read_bytes(path).decode()


@contextmanager
def staged_dir(spark: SparkSession, path: str) -> Iterator[str]:
    """Yield a staging directory; on success it replaces `path` whole, with a `_SUCCESS` marker."""
    base, staging = _staging(path)
    fs = _FS(spark, base)
    try:
        yield staging
        fs.touch(f"{staging}/{SUCCESS}")
        _replace_table(fs, staging, base)
    finally:
        _drop_staging(fs, staging)


def write_table(
    df: DataFrame,
    path: str,
    partition_by: str | None = None,
    expected_rows: int | None = None,
    whole_table: bool = False,
) -> None:
    """Write `df` as Parquet at `path`, replacing the partitions it holds (or the whole table).

    `expected_rows` is checked against what was staged before anything is moved into place.
    """
    spark = df.sparkSession
    fs = _FS(spark, path)
    base, staging = _staging(path)
    try:
        if partition_by:  # one file per partition value, not one per task and value
            df = df.repartition(partition_by)
        writer = df.write.mode("overwrite")
        if partition_by:
            writer = writer.partitionBy(partition_by)
        writer.parquet(staging)
        if expected_rows is not None:
            staged = spark.read.schema(df.schema).parquet(staging).count()
            if staged != expected_rows:
                raise RecsysError(f"{base}: staged {staged} rows but expected {expected_rows}; nothing was moved into place")
        if partition_by and not whole_table:
            _replace_partitions(fs, staging, base)
        else:
            _replace_table(fs, staging, base)
    finally:
        _drop_staging(fs, staging)


def _staging(path: str) -> tuple[str, str]:
    """(the table path, a fresh staging dir beside it under `_staging/`, on the same filesystem)."""
    base = path.rstrip("/")
    parent, _, name = base.rpartition("/")
    return base, f"{parent or '.'}/_staging/{name}-{uuid.uuid4().hex[:12]}"


def _drop_staging(fs: _FS, staging: str) -> None:
    """Delete a staging dir, and `_staging/` itself once no other write is using it."""
    _delete(fs, staging, staging.rsplit("/", 1)[0])


def _replace_table(fs: _FS, staging: str, target: str) -> None:
    old = f"{target}.__old-{uuid.uuid4().hex[:8]}"
    if fs.exists(target):
        fs.rename(target, old)
    fs.rename(staging, target)
    fs.delete(old)


def _replace_partitions(fs: _FS, staging: str, target: str) -> None:
    if not fs.exists(target):
        fs.fs.mkdirs(fs.p(target))
    fs.delete(f"{target}/{SUCCESS}")
    for part in fs.children(staging):
        fs.delete(f"{target}/{part}")
        fs.rename(f"{staging}/{part}", f"{target}/{part}")
    fs.touch(f"{target}/{SUCCESS}")


def read_table(spark: SparkSession, path: str) -> DataFrame:
    """Read a table written by `write_table`; refuse one that is missing or was not completed."""
    fs = _FS(spark, path)
    if not fs.exists(path):
        raise RecsysError(f"table not found: {path} (run the job that writes it first)")
    if not fs.exists(f"{path.rstrip('/')}/{SUCCESS}"):
        raise RecsysError(f"table {path} has no {SUCCESS} marker: it was not completely written; re-run the job that writes it")
    return spark.read.parquet(path)
