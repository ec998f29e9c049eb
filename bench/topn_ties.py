"""`python -m bench.topn_ties`: the top-k selection step alone, argpartition (ties kept arbitrarily)
vs `kernels.top_k_rows` (ties by item id), on the same random scores, side by side."""

from __future__ import annotations

import time

import numpy as np

from recsys_spark.recs.kernels import top_k_rows

from .common import machine


def main() -> None:
    print(f"machine: {machine()}")
    rng = np.random.default_rng(0)
    for n_items, rows in ((50_000, 60), (3_000, 1000)):  # one top-N block each: about 3M scores
        scores = rng.standard_normal((rows, n_items)).astype(np.float32)
        ids, k = np.arange(n_items), 10

        def arbitrary(scores=scores, ids=ids, k=k, n_items=n_items) -> np.ndarray:
            part = np.argpartition(scores, n_items - k, axis=1)[:, -k:]
            top = np.take_along_axis(scores, part, axis=1)
            return np.take_along_axis(part, np.lexsort((ids[part], -top), axis=1), axis=1)

        def deterministic(scores=scores, ids=ids, k=k) -> np.ndarray:
            return top_k_rows(scores, ids, k)[0]

        assert (arbitrary() == deterministic()).all()  # no ties in random floats: the same lists
        secs = {}
        for name, fn in (("argpartition", arbitrary), ("ties by item id", deterministic)):
            fn()
            t0 = time.perf_counter()
            for _ in range(30):
                fn()
            secs[name] = (time.perf_counter() - t0) / 30
        a, d = secs["argpartition"], secs["ties by item id"]
        print(
            f"{rows} users x {n_items:,} items, k={k}: argpartition {a * 1e3:.1f} ms, "
            f"ties by item id {d * 1e3:.1f} ms: {d / a:.2f}x"
        )


if __name__ == "__main__":
    main()
