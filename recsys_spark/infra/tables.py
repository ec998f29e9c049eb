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
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from recsys_spark.errors import RecsysError
from recsys_spark.infra.paths import local_path

SUCCESS = "_SUCCESS"
VERSIONS = ".versions"
JOURNAL = "_commit-"
SPARK_CHECKPOINT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Previous versions kept per table: the session carries output.keep_versions (infra.session sets it).
KEEP_VERSIONS_KEY = "spark.recsys.keepVersions"
SWITCH_POINTS = ("staged", "journal", "switched_one", "committed")  # the moments a commit passes, in order
_switch_hooks: list[Callable[[str], None]] = []


def on_switch_point(hook: Callable[[str], None]) -> None:
    """Call `hook(point)` at each of SWITCH_POINTS as commits pass them: the fault tests install one
    that kills the process there, as `kill -9` would (tests/kill_at.py)."""
    _switch_hooks.append(hook)


def _passing(point: str) -> None:
    for hook in _switch_hooks:
        hook(point)


def keep_versions(spark: SparkSession) -> int:
    return int(spark.conf.get(KEEP_VERSIONS_KEY, "1"))


class _FS:
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
    fs = _FS(spark, path)
    if not fs.exists(path):
        return []
    return sorted(
        n for n in (s.getPath().getName() for s in fs.fs.listStatus(fs.p(path))) if not n.startswith(("_", "."))
    )


def local_dir(spark: SparkSession, path: str) -> str:
    """`path` as a local directory: itself when local, else a copy in a temporary directory."""
    fs = _FS(spark, path)
    if fs.fs.getUri().getScheme() in (None, "file"):
        return os.path.realpath(
            path.removeprefix("file://").removeprefix("file:")
        )  # the current version of a versioned table
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
            base, staging = _staging(path)
            fs = _FS(self.spark, base)
            try:
                yield staging
                fs.touch(f"{staging}/{SUCCESS}")
                _replace_table(fs, staging, base)
            finally:
                _drop_staging(fs, staging)
            return
        version = _new_version(local)
        try:
            yield str(version)
            (version / SUCCESS).touch()
        except BaseException:
            _remove(version)
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
                _link_untouched_partitions(local, Path(version), set(replaces or []))

    def commit(self) -> None:
        """Switch every staged table in: one atomic rename per table, under a journal when there are several."""
        if not self.staged:
            return
        journal = None
        if len(self.staged) > 1:
            journal = self.staged[0][0].parent / VERSIONS / f"{JOURNAL}{uuid.uuid4().hex[:12]}.json"
            write_atomically(journal, json.dumps([[str(link), str(v)] for link, v in self.staged]))
            _passing("journal")
        for i, (link, version) in enumerate(self.staged):
            _switch(link, version)
            if i == 0:
                _passing("switched_one")
        if journal:
            journal.unlink()
        _passing("committed")
        for link, _ in self.staged:
            _prune(link, keep_versions(self.spark))
        self.staged = []


@contextmanager
def transaction(spark: SparkSession) -> Iterator[Transaction]:
    tx = Transaction(spark)
    try:
        yield tx
        _passing("staged")
        tx.commit()
    except BaseException:
        for _, version in tx.staged:
            _remove(version)
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
    fs = _FS(df.sparkSession, path)
    base, staging = _staging(path)
    try:
        _write_parquet(df, staging, partition_by, expected_rows, path)
        if partition_by and not whole_table:
            _replace_partitions(fs, staging, base, replaces)
        else:
            _replace_table(fs, staging, base)
    finally:
        _drop_staging(fs, staging)


def _versions_dir(link: Path) -> Path:
    return link.parent / VERSIONS / link.name


def _new_version(link: Path) -> Path:
    """A new, empty version directory for the table at `link`; names sort by creation time."""
    d = _versions_dir(link) / f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    d.parent.mkdir(parents=True, exist_ok=True)
    return d


def _current(link: Path) -> Path | None:
    """The version directory `link` points to (None when absent or not one of ours)."""
    if not link.is_symlink():
        return None
    return (link.parent / os.readlink(link)).resolve()


def _link_untouched_partitions(link: Path, version: Path, replaced: set[str]) -> None:
    """Hard-link into `version` every partition of the current table it did not write or replace."""
    current = _current(link) if link.is_symlink() else (link if link.is_dir() else None)
    if current is None or not current.is_dir():
        return
    written = {p.name for p in version.iterdir() if p.is_dir()} | replaced
    for part in (p for p in current.iterdir() if p.is_dir() and "=" in p.name and p.name not in written):
        for f in part.rglob("*"):
            dst = version / part.name / f.relative_to(part)
            if f.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(f, dst)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    with open(tmp) as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _switch(link: Path, version: Path) -> None:
    """Point `link` at `version` with one atomic rename (a table still written the old way, as a
    real directory, is first kept as a version of its own)."""
    if link.exists() and not link.is_symlink():
        legacy = _versions_dir(link) / f"v{0:020d}-legacy-{uuid.uuid4().hex[:8]}"
        legacy.parent.mkdir(parents=True, exist_ok=True)
        os.rename(link, legacy)
    tmp = link.with_name(f".{link.name}.link-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(version, link.parent), tmp)
    os.replace(tmp, link)


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _prune(link: Path, keep: int) -> None:
    """Keep the current version and the `keep` before it; drop older ones and unfinished ones."""
    current = _current(link)
    versions = _versions_dir(link)
    if current is None or not versions.is_dir():
        return
    older = sorted((v for v in versions.iterdir() if v.is_dir() and v.name < current.name), reverse=True)
    newer = [v for v in versions.iterdir() if v.is_dir() and v.name > current.name]  # left by a killed run
    for v in older[keep:] + newer:
        _remove(v)


def drop_kept_versions(path: str) -> int:
    """Remove every kept version of the table at `path` but its current one (erasure: an older
    version still holds the erased rows); how many were removed. Local tables only."""
    link = local_path(path.rstrip("/"))
    current = _current(link) if link is not None else None
    versions = _versions_dir(link) if link is not None else None
    if current is None or versions is None or not versions.is_dir():
        return 0
    older = [v for v in versions.iterdir() if v.is_dir() and v.resolve() != current]
    for v in older:
        _remove(v)
    return len(older)


def recover(root: str, checkpoint_dir: str | None = None, keep: int = 1) -> list[str]:
    """Complete the commits a killed run left half done, drop what killed runs staged, and remove
    their leftovers (`_staging/`, `*.__old-*`, link temporaries, and their checkpoint folders when
    the checkpoint dir is inside the root). Call it holding the root's lock, before Spark starts.
    Returns what it did, one line per action."""
    base = local_path(root)
    if base is None or not base.is_dir():
        return []
    done = []
    ckpt = local_path(checkpoint_dir) if checkpoint_dir else None
    if ckpt is not None and ckpt.is_dir() and ckpt.resolve().is_relative_to(base.resolve()):
        # Spark names each session's folder by a UUID: a successful run removes its own; nothing else is touched.
        for run_dir in (d for d in ckpt.iterdir() if d.is_dir() and SPARK_CHECKPOINT.fullmatch(d.name)):
            _remove(run_dir)
            done.append(f"removed {run_dir}")
    for journal in sorted(base.rglob(f"{VERSIONS}/{JOURNAL}*.json")):
        for link, version in json.loads(journal.read_text()):
            if Path(version).is_dir() and _current(Path(link)) != Path(version).resolve():
                _switch(Path(link), Path(version))
                done.append(f"completed the interrupted switch of {link}")
        journal.unlink()
    for versions in base.rglob(VERSIONS):
        for table in (d for d in versions.iterdir() if d.is_dir()):
            link = versions.parent / table.name
            if link.is_symlink():
                _prune(link, keep)
    for leftover in [
        *base.rglob("_staging"),
        *base.rglob("*.__old-*"),
        *base.rglob(".*.link-*"),
        *base.rglob(f".{JOURNAL}*.tmp"),
    ]:
        if leftover.is_dir() and not leftover.is_symlink():
            _remove(leftover)
        else:
            leftover.unlink(missing_ok=True)
        done.append(f"removed {leftover}")
    return done


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


def _replace_partitions(fs: _FS, staging: str, target: str, replaces: list[str]) -> None:
    if not fs.exists(target):
        fs.fs.mkdirs(fs.p(target))
    fs.delete(f"{target}/{SUCCESS}")
    for part in replaces:
        fs.delete(f"{target}/{part}")
    for part in fs.children(staging):
        fs.delete(f"{target}/{part}")
        fs.rename(f"{staging}/{part}", f"{target}/{part}")
    fs.touch(f"{target}/{SUCCESS}")


def read_table(spark: SparkSession, path: str) -> DataFrame:
    """Read a table written by `write_table`; refuse one that is missing or was not completed.

    A versioned table is read from the version its link points to now, so a switch during a
    long read cannot mix two versions."""
    fs = _FS(spark, path)
    if not fs.exists(path):
        raise RecsysError(f"table not found: {path} (run the job that writes it first)")
    if not fs.exists(f"{path.rstrip('/')}/{SUCCESS}"):
        raise RecsysError(
            f"table {path} has no {SUCCESS} marker: it was not completely written; re-run the job that writes it"
        )
    local = local_path(path.rstrip("/"))
    version = _current(local) if local is not None else None
    return spark.read.parquet(str(version) if version else path)
