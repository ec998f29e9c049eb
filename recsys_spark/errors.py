"""Errors a user can act on: the CLI prints their message on one line and exits non-zero."""

from __future__ import annotations

import re
from urllib.parse import unquote


class RecsysError(RuntimeError):
    """Bad input or state; the message names the value and the fix."""


def first_line(e: BaseException) -> str:
    """The first line of an error's message; for a Py4J error, of the Java exception behind it."""
    lines = str(getattr(e, "java_exception", e)).strip().splitlines()
    return lines[0] if lines else type(e).__name__


MISMATCH = "PARQUET_COLUMN_DATA_TYPE_MISMATCH"
_FAILED_READ = re.compile(r"\[FAILED_READ_FILE\.(\w+)\] Encountered error while reading file (\S+?)\.(?:\s|$)(.*)")


def unreadable_file(e: BaseException) -> RecsysError | None:
    """A Spark job's failure to read one file, as a one-line error naming the file and the fix;
    None for any other error. Spark reports it only when a task reads the file, deep in a job."""
    m = _FAILED_READ.search(str(getattr(e, "java_exception", e)))
    if m is None:
        return None
    kind, path = m.group(1), unquote(m.group(2))  # Spark URL-encodes the path
    if kind not in (MISMATCH, "NO_HINT", "CANNOT_READ_FILE_FOOTER"):  # a vanished file, an unknown scheme: Spark's own
        return None
    if path.startswith("file:"):  # file:/x and file:///x: the local path a person can open
        path = "/" + path.removeprefix("file:").lstrip("/")
    detail = m.group(3).split("SQLSTATE")[0].strip()
    if kind == MISMATCH:
        return RecsysError(
            f"cannot read {path}: {detail} Its column types differ from the other files of its table (pandas, "
            "for one, writes nanosecond timestamps where Spark writes microseconds): rewrite the file with the "
            "others' types (pandas: to_parquet(..., coerce_timestamps='us')) or move it out of the folder"
        )
    return RecsysError(
        f"cannot read {path}: not a readable Parquet file (corrupt, truncated or another format"
        + (f"; {detail}" if detail else "")
        + "). Under output.root: run the job that writes its table again (ingest for events/, train for model/) "
        "or restore a kept version; in the input: replace the file or remove it"
    )
