"""One writer per output root: a lock file holding who runs (pid, host, start, command).

A second run on the same root fails at once with a one-line error naming the holder, instead of
both runs interleaving their swaps. A lock whose process is gone (same host, pid not alive) is
stale: it is reported and taken over, as is an empty or unreadable lock file older than a few
seconds (its writer died between creating and filling it). Taken with an atomic exclusive create on the local disk
before Spark starts; roots on other filesystems (hdfs://, s3a://) are not locked here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recsys_spark.errors import RecsysError
from recsys_spark.infra.paths import local_path

log = logging.getLogger("recsys_spark")
LOCK_NAME = "_recsys.lock"


def check_output_root(root: str) -> None:
    """Refuse an output root that is a file, or under one, before any work."""
    path = local_path(root)
    if path is None:
        return
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise RecsysError(
                    f"output.root {root!r}: {p} is a file, not a folder: point output.root at a folder (e.g. output)"
                )
            if not os.access(p, os.W_OK | os.X_OK):
                raise RecsysError(
                    f"output.root {root!r}: {p} is not writable by this user: choose a folder you can write"
                )
            return


HALF_WRITTEN_S = 10  # a lock's writer fills it within microseconds of creating it: older and unreadable is stale


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def output_lock(root: str, command: str) -> Iterator[None]:
    """Hold the output root's lock for the duration of one command."""
    path = local_path(root)
    if path is None:
        yield
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = path / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    for _ in range(2):  # a second try after removing a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(lock.read_text() or "{}")
            except OSError as e:  # unreadable (permissions): not ours to take over
                raise RecsysError(
                    f"output.root {root}: cannot read its lock {lock} ({e.strerror}): check its owner"
                ) from None
            except ValueError:
                holder = {}
            holder = holder if isinstance(holder, dict) else {}
            if not isinstance(holder.get("pid"), int) and _age(lock) > HALF_WRITTEN_S:
                log.warning("removing an empty or half-written lock on %s (%s): its writer is gone", root, lock)
                lock.unlink(missing_ok=True)
                continue
            if (
                holder.get("host") == me["host"]
                and isinstance(holder.get("pid"), int)
                and not process_alive(holder["pid"])
            ):
                log.warning(
                    "removing a stale lock on %s: pid %s (%s, started %s) is gone",
                    root,
                    holder["pid"],
                    holder.get("command"),
                    holder.get("started"),
                )
                lock.unlink(missing_ok=True)
                continue
            if not isinstance(holder.get("pid"), int):
                raise RecsysError(f"output.root {root}: another run is taking {lock} right now: try again") from None
            raise RecsysError(
                f"output.root {root} is in use by pid {holder.get('pid')} on {holder.get('host')} "
                f"({holder.get('command')}, started {holder.get('started')}): "
                f"wait for it, or use another output.root; if that run is gone, delete {lock}"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:
        raise RecsysError(f"output.root {root}: could not take {lock} (another run took it first): try again")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
