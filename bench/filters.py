"""`python -m bench.filters`: what recommend's item rules cost in the top-N kernel.

`kernels.score_batch` on one block of random rank-32 factors (users x items, 20 seen items each),
top-10, with no rules (the baseline), with an item filter that blocks a third of the catalogue, with
a cap of 3 per value over 20 values, and with a cap of 3 over 2,000 values (about 5 items each: a
quarter, those with at most 3 items, are folded into the uncapped group); best of 3 runs each, in
this process, no Spark. Values are drawn independently of the scores, so few rows need the exact
value-by-value pass: a best case for data whose best items cluster in one value. Prints the
machine, the sizes and each ratio against the baseline.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from recsys_spark.recs.kernels import ListRules, block_rows, score_batch

from .common import machine


def batch(users: int, items: int, rank: int, seen: int, rng: np.random.Generator) -> pa.RecordBatch:
    u = rng.normal(size=(users, rank)).astype(np.float32)
    offsets = pa.array(np.arange(0, (users + 1) * rank, rank, dtype=np.int32))
    seen_offsets = pa.array(np.arange(0, (users + 1) * seen, seen, dtype=np.int32))
    history = rng.integers(0, items, users * seen).astype(np.int32)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(np.arange(users, dtype=np.int32)),
            pa.ListArray.from_arrays(offsets, pa.array(u.ravel())),
            pa.ListArray.from_arrays(seen_offsets, pa.array(history)),
            pa.ListArray.from_arrays(seen_offsets, pa.array(np.ones(users * seen))),
        ],
        names=["user_idx", "features", "seen", "weights"],
    )


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=20_000)
    ap.add_argument("--items", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(7)
    rank, n = 32, 10
    b = batch(args.users, args.items, rank, 20, rng)
    ids = np.arange(args.items, dtype=np.int64)
    vt = rng.normal(size=(rank, args.items)).astype(np.float32)
    pos = np.arange(args.items)
    rows = block_rows(args.items)
    allowed = rng.random(args.items) > 1 / 3
    cases = {
        "no rules (baseline)": None,
        "item filter (a third blocked)": ListRules(allowed=allowed),
        "cap 3 per value, 20 values": ListRules(groups=rng.integers(0, 20, args.items), cap=3),
        "cap 3 per value, 2,000 values": ListRules(groups=rng.integers(0, 2_000, args.items), cap=3),
    }
    print(f"[bench] filters: {machine()}; {args.users:,} users x {args.items:,} items, rank {rank}, top-{n}")
    base = None
    for label, rules in cases.items():
        secs = best_of(3, lambda rules=rules: score_batch(b, ids, vt, pos, n, rows, rules=rules))
        base = base or secs
        print(f"[bench] {label:<32} {secs:6.2f} s  {1e6 * secs / args.users:6.1f} µs/user  {secs / base:5.2f}x")


if __name__ == "__main__":
    main()
