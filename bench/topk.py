"""`python -m bench.topk`: the top-k selection step alone, on the same random scores per size (one
top-N block: about 3M scores), three ways side by side:

- plain `argpartition` (ties kept arbitrarily: the floor of what a selection can cost);
- the full partition with ties by item id (`kernels._top_k_of` on whole rows: top-N before the
  chunked first pass);
- `kernels.top_k_rows` as top-N runs it (the chunked first pass, then the same tie rule).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from recsys_spark.recs.kernels import _top_k_of, block_rows, chunk_width, top_k_rows

from .common import machine

REPEATS = 30


def seconds(fn: Callable[[], np.ndarray]) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        fn()
    return (time.perf_counter() - t0) / REPEATS


def main() -> None:
    print(f"machine: {machine()}; k = 10; the mean of {REPEATS} runs per block")
    rng = np.random.default_rng(0)
    for n_items in (3_000, 10_000, 50_000):
        rows, k = block_rows(n_items), 10
        scores = rng.standard_normal((rows, n_items)).astype(np.float32)
        ids = np.arange(n_items)

        def arbitrary(scores=scores, ids=ids, k=k, n_items=n_items) -> np.ndarray:
            part = np.argpartition(scores, n_items - k, axis=1)[:, -k:]
            top = np.take_along_axis(scores, part, axis=1)
            return np.take_along_axis(part, np.lexsort((ids[part], -top), axis=1), axis=1)

        def full(scores=scores, ids=ids, k=k) -> np.ndarray:
            return _top_k_of(scores, None, ids, k)[0]

        def chunked(scores=scores, ids=ids, k=k) -> np.ndarray:
            return top_k_rows(scores, ids, k)[0]

        assert (arbitrary() == full()).all() and (full() == chunked()).all()  # random floats: no ties
        a, f, c = seconds(arbitrary), seconds(full), seconds(chunked)
        print(
            f"{rows} users x {n_items:,} items (chunks of {chunk_width(n_items)}): argpartition {a * 1e3:.1f} ms, "
            f"full partition with ties by item id {f * 1e3:.1f} ms, chunked first pass {c * 1e3:.1f} ms: "
            f"chunked / full {c / f:.2f}x"
        )


if __name__ == "__main__":
    main()
