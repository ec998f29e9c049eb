"""Files and folders on any filesystem Spark reaches (local, hdfs://, s3a://), through the Hadoop
FileSystem API: existence, listing, small files, and the staged-then-moved writes of tables that
do not live on the local disk (a failure before the move changes nothing; the move itself is not
atomic).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

from pyspark.sql import SparkSession

from recsys_spark.errors import RecsysError

SUCCESS = "_SUCCESS"


class FS:
    """Thin wrapper over org.apache.hadoop.fs.FileSystem for one path's filesystem."""

    def __init__(self, spark: SparkSession, path: str):
        jvm = spark._jvm  # the Hadoop FS API is only reachable through py4j
        self._jvm = jvm
        self.path = jvm.org.apache.hadoop.fs.Path(path)
        self.fs = self.path.getFileSystem(spark._jsc.hadoopConfiguration())

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
    fs = FS(spark, path)
    if not fs.exists(path):
        return []
    return sorted(
        n for n in (s.getPath().getName() for s in fs.fs.listStatus(fs.p(path))) if not n.startswith(("_", "."))
    )


def local_dir(spark: SparkSession, path: str) -> str:
    """`path` as a local directory: itself when local, else a copy in a temporary directory."""
    fs = FS(spark, path)
    if fs.fs.getUri().getScheme() in (None, "file"):
        return os.path.realpath(
            path.removeprefix("file://").removeprefix("file:")
        )  # the current version of a versioned table
    dst = tempfile.mkdtemp(prefix="recsys-")
    fs.fs.copyToLocalFile(False, fs.p(path), fs.p(dst), True)
    return f"{dst}/{path.rstrip('/').rsplit('/', 1)[-1]}"


def path_exists(spark: SparkSession, path: str) -> bool:
    return FS(spark, path).exists(path)


def remove_dir(spark: SparkSession, path: str, parent_if_empty: str | None = None) -> None:
    """Delete `path` (a folder, recursively); then `parent_if_empty` too when nothing else is left in it."""
    delete(FS(spark, path), path, parent_if_empty)


def delete(fs: FS, path: str, parent_if_empty: str | None) -> None:
    fs.delete(path)
    if parent_if_empty and fs.exists(parent_if_empty) and not list(fs.fs.listStatus(fs.p(parent_if_empty))):
        fs.delete(parent_if_empty)


def write_bytes(spark: SparkSession, path: str, data: bytes) -> None:
    """A small file (config YAML, a CSV of a few rows, a PNG) on any Hadoop filesystem."""
    FS(spark, path).write_bytes(path, data)


def write_text(spark: SparkSession, path: str, text: str) -> None:
    write_bytes(spark, path, text.encode())


def read_text(spark: SparkSession, path: str) -> str:
    fs = FS(spark, path)
    if not fs.exists(path):
        raise RecsysError(f"file not found: {path}")
    return fs.read_bytes(path).decode()


def staging(path: str) -> tuple[str, str]:
    """(the table path, a fresh staging dir beside it under `staging/`, on the same filesystem)."""
    base = path.rstrip("/")
    parent, _, name = base.rpartition("/")
    return base, f"{parent or '.'}/staging/{name}-{uuid.uuid4().hex[:12]}"


def drop_staging(fs: FS, staging: str) -> None:
    """Delete a staging dir, and `staging/` itself once no other write is using it."""
    delete(fs, staging, staging.rsplit("/", 1)[0])


def replace_table(fs: FS, staging: str, target: str) -> None:
    old = f"{target}.__old-{uuid.uuid4().hex[:8]}"
    if fs.exists(target):
        fs.rename(target, old)
    fs.rename(staging, target)
    fs.delete(old)


def replace_partitions(fs: FS, staging: str, target: str, replaces: list[str]) -> None:
    if not fs.exists(target):
        fs.fs.mkdirs(fs.p(target))
    fs.delete(f"{target}/{SUCCESS}")
    for part in replaces:
        fs.delete(f"{target}/{part}")
    for part in fs.children(staging):
        fs.delete(f"{target}/{part}")
        fs.rename(f"{staging}/{part}", f"{target}/{part}")
    fs.touch(f"{target}/{SUCCESS}")
