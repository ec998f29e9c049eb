"""What every benchmark shares: the machine line, a timer, and the generated data's shape per size."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

RESULTS = Path(__file__).parent / "results"
T = TypeVar("T")


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores, {mem:.0f} GiB, {platform.machine()}, Python {platform.python_version()}"


def timed(fn: Callable[[], T], label: str) -> tuple[float, T]:
    """Seconds and result of `fn()`, with a progress line before and after (benchmarks run for minutes)."""
    print(f"[bench] {label} ...", flush=True)
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    print(f"[bench] {label}: {secs:.1f} s", flush=True)
    return secs, out


def data_overrides(events: int) -> list[str]:
    """Config overrides for a generated data set of `events` events, kept under bench/results/data-<events>.

    Users grow with events (20 events a user); the catalogue grows with users up to 50k items, the
    size of a typical product catalogue, so top-N cost (users x items) stays comparable across sizes.
    """
    users = max(200, events // 20)
    items = min(50_000, max(100, users // 5))
    return [
        f"output.root={RESULTS / f'data-{events}'}",
        f"generate.events={events}",
        f"generate.users={users}",
        f"generate.items={items}",
    ]


def user_items(pairs, pdf=None):  # a DataFrame, or its pandas copy
    """(user_idx, item_idx, confidence) pairs as `implicit`'s user x item CSR matrix (benchmarks
    only: collects every pair). Pass `pdf` when the pairs are already on the driver."""
    import numpy as np
    import scipy.sparse as sp

    pdf = pairs.select("user_idx", "item_idx", "confidence").toPandas() if pdf is None else pdf
    shape = (int(pdf.user_idx.max()) + 1, int(pdf.item_idx.max()) + 1)
    return sp.csr_matrix((pdf.confidence.to_numpy(np.float32), (pdf.user_idx, pdf.item_idx)), shape=shape)
