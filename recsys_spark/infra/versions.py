"""Local versioned tables: a table's path is a symbolic link to a complete version directory
kept beside it, `<parent>/.versions/<name>/v<time>-<id>`; a commit switches links with one atomic
`rename` each, under a journal when there are several, and `recover` completes a commit a killed
run left half done. Plain Python on the local disk: no Spark.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from recsys_spark.infra.paths import local_path

VERSIONS = ".versions"
JOURNAL = "_commit-"
SPARK_CHECKPOINT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SWITCH_POINTS = ("staged", "journal", "switched_one", "committed")  # the moments a commit passes, in order
_switch_hooks: list[Callable[[str], None]] = []


def on_switch_point(hook: Callable[[str], None]) -> None:
    """Call `hook(point)` at each of SWITCH_POINTS as commits pass them: the fault tests install one
    that kills the process there, as `kill -9` would (tests/kill_at.py)."""
    _switch_hooks.append(hook)


def passing(point: str) -> None:
    for hook in _switch_hooks:
        hook(point)


def versions_dir(link: Path) -> Path:
    return link.parent / VERSIONS / link.name


def new_version(link: Path) -> Path:
    """A new, empty version directory for the table at `link`; names sort by creation time."""
    d = versions_dir(link) / f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    d.parent.mkdir(parents=True, exist_ok=True)
    return d


def current_version(link: Path) -> Path | None:
    """The version directory `link` points to (None when absent or not one of ours)."""
    if not link.is_symlink():
        return None
    return (link.parent / os.readlink(link)).resolve()


def link_untouched_partitions(link: Path, version: Path, replaced: set[str]) -> None:
    """Hard-link into `version` every partition of the current table it did not write or replace."""
    current = current_version(link) if link.is_symlink() else (link if link.is_dir() else None)
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


def switch(link: Path, version: Path) -> None:
    """Point `link` at `version` with one atomic rename (a table still written the old way, as a
    real directory, is first kept as a version of its own)."""
    if link.exists() and not link.is_symlink():
        legacy = versions_dir(link) / f"v{0:020d}-legacy-{uuid.uuid4().hex[:8]}"
        legacy.parent.mkdir(parents=True, exist_ok=True)
        os.rename(link, legacy)
    tmp = link.with_name(f".{link.name}.link-{uuid.uuid4().hex[:8]}")
    os.symlink(os.path.relpath(version, link.parent), tmp)
    os.replace(tmp, link)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def prune(link: Path, keep: int) -> None:
    """Keep the current version and the `keep` before it; drop older ones and unfinished ones."""
    current = current_version(link)
    versions = versions_dir(link)
    if current is None or not versions.is_dir():
        return
    older = sorted((v for v in versions.iterdir() if v.is_dir() and v.name < current.name), reverse=True)
    newer = [v for v in versions.iterdir() if v.is_dir() and v.name > current.name]  # left by a killed run
    for v in older[keep:] + newer:
        remove(v)


def drop_kept_versions(path: str) -> int:
    """Remove every kept version of the table at `path` but its current one (erasure: an older
    version still holds the erased rows); how many were removed. Local tables only."""
    link = local_path(path.rstrip("/"))
    current = current_version(link) if link is not None else None
    versions = versions_dir(link) if link is not None else None
    if current is None or versions is None or not versions.is_dir():
        return 0
    older = [v for v in versions.iterdir() if v.is_dir() and v.resolve() != current]
    for v in older:
        remove(v)
    return len(older)


def recover(root: str, checkpoint_dir: str | None = None, keep: int = 1) -> list[str]:
    """Complete the commits a killed run left half done, drop what killed runs staged, and remove
    their leftovers (`staging/`, `*.__old-*`, link temporaries, and their checkpoint folders when
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
            remove(run_dir)
            done.append(f"removed {run_dir}")
    for journal in sorted(base.rglob(f"{VERSIONS}/{JOURNAL}*.json")):
        for link, version in json.loads(journal.read_text()):
            if Path(version).is_dir() and current_version(Path(link)) != Path(version).resolve():
                switch(Path(link), Path(version))
                done.append(f"completed the interrupted switch of {link}")
        journal.unlink()
    for versions in base.rglob(VERSIONS):
        for table in (d for d in versions.iterdir() if d.is_dir()):
            link = versions.parent / table.name
            if link.is_symlink():
                prune(link, keep)
    for leftover in [
        *base.rglob("staging"),
        *base.rglob("*.__old-*"),
        *base.rglob(".*.link-*"),
        *base.rglob(f".{JOURNAL}*.tmp"),
    ]:
        if leftover.is_dir() and not leftover.is_symlink():
            remove(leftover)
        else:
            leftover.unlink(missing_ok=True)
        done.append(f"removed {leftover}")
    return done


def commit(staged: list[tuple[Path, Path]], keep: int) -> None:
    """Switch every (link, version) in: one atomic rename per table, under a journal when there
    are several; then keep `keep` earlier versions of each."""
    journal = None
    if len(staged) > 1:
        journal = staged[0][0].parent / VERSIONS / f"{JOURNAL}{uuid.uuid4().hex[:12]}.json"
        write_atomically(journal, json.dumps([[str(link), str(v)] for link, v in staged]))
        passing("journal")
    for i, (link, version) in enumerate(staged):
        switch(link, version)
        if i == 0:
            passing("switched_one")
    if journal:
        journal.unlink()
    passing("committed")
    for link, _ in staged:
        prune(link, keep)
