"""Where a path lives: the one question about locations that code without Spark (the lock, the
report, the CLI's MLflow-only commands) also asks."""

from __future__ import annotations

from pathlib import Path


def local_path(path: str) -> Path | None:
    """`path` on the local disk, or None when it lives on another filesystem (hdfs://, s3a://)."""
    if "://" in path and not path.startswith("file:"):
        return None
    return Path(path.removeprefix("file://").removeprefix("file:"))
