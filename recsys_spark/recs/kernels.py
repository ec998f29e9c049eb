"""The numpy/pyarrow kernels of top-N and its explanations, shared by the Spark jobs and the served
model: this module imports no pyspark, so the pyfunc answers on a host without Spark.

`score_batch` is one Arrow batch of `topn.top_n`'s `mapInArrow`; `top_k_rows` keeps each row's k
best with ties broken by item id; `explain_block` splits an ALS score into one term per history
item, `ease_block` an EASE score (exactly: the score is a sum over the history); `because_column`
turns those terms into the `because` lists; `fold_in_batch` solves one Arrow batch of histories.

Every function a Spark job's `mapInArrow` closure calls lives here, not beside the job's code: a
Python worker imports the module a pickled closure refers to, and this one costs numpy and pyarrow
(0.2 s) where `foldin` or `ease` pull in pandas, SciPy and the tuner (1.0 s, on each worker, in
each fresh session: fold-in's first batch paid it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

TOPN_SCHEMA = "user_idx int, rank int, item_idx int, score float"  # what score_batch returns
BECAUSE_TYPE = "array<struct<item_id:string,name:string,share:float>>"  # and its `because`
BECAUSE_TOP = 3  # history items named per recommendation
# Users scored per matrix product: as many as keep a block's scores near this many floats (12 MB),
# so the top-k selection works from cache. In numpy alone that was 2-3x faster than 1024-user blocks on
# 50k items; inside Spark, where Arrow transfer and pandas work share the cores, top-N for 250k
# users x 50k items took 36.6 s against 38.3 s for 1024-user blocks of negated scores, side by
# side on the 5M-event bench data; `make bench` prints the block-size ratio at its own size.
# With top_k_rows's chunked first pass, 60 and 120 users per block cost the same on 50k items in
# numpy alone, 250 and 500 a third more (2026-12-07).
BLOCK_CELLS = 3_000_000


def block_rows(n_items: int) -> int:
    """Users per matrix product for a catalogue of `n_items` (BLOCK_CELLS scores, 32-1024 users).

    >>> block_rows(50_000), block_rows(3_000), block_rows(10)
    (60, 1000, 1024)
    """
    return max(32, min(1024, BLOCK_CELLS // max(n_items, 1)))


@dataclass(frozen=True)
class Explain:
    """What the exact decomposition of scores needs beside the factors: the model's family and
    settings, and each item's id and display name by item_idx (catalogue-sized)."""

    implicit: bool
    alpha: float
    reg_param: float
    item_ids: np.ndarray  # item_id at position item_idx (object array)
    names: np.ndarray  # display name at position item_idx, None where there is no text
    ease: bool = False  # `vt` is EASE's B (history item x target), not ALS item factors


@dataclass(frozen=True)
class ListRules:
    """What a list may hold beyond each user's masked pairs, by item_idx (catalogue-sized arrays):
    items where `allowed` is false are never listed (recommend.item_filter, candidates, excluded
    items); at most `cap` items of one `groups` code per list (recommend.max_per_value; code -1, no
    value, is uncapped). Applied before the top-N is cut, so a user still gets n items while n remain."""

    allowed: np.ndarray | None = None  # bool by item_idx; an index beyond it is not allowed
    groups: np.ndarray | None = None  # int code by item_idx; an index beyond it has no value
    cap: int = 0

    def columns(self, item_ids: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(blocked columns, group code per column) for the columns `item_ids`."""
        blocked = codes = None
        if self.allowed is not None:
            inside = item_ids < self.allowed.size
            blocked = np.ones(item_ids.size, bool)
            blocked[inside] = ~self.allowed[item_ids[inside]]
        if self.groups is not None:
            inside = item_ids < self.groups.size
            codes = np.full(item_ids.size, -1, np.int64)
            codes[inside] = self.groups[item_ids[inside]]
            if blocked is not None:
                codes[blocked] = -1  # never listed: no value to count
            values, counts = np.unique(codes, return_counts=True)
            codes[np.isin(codes, values[counts <= self.cap])] = -1  # a value that cannot overflow needs no cap
        return blocked, codes


class Solver(NamedTuple):
    """The settings of ALS's least-squares solve for a user (see `_normal_equations`)."""

    implicit: bool
    alpha: float
    reg_param: float


def solver_for(config: dict[str, Any]) -> Solver:
    """The Solver of a saved model's config: the chosen alpha and reg_param, else the configured ones."""
    chosen = config.get("chosen", {})
    return Solver(
        implicit=config["interactions"]["mode"] == "implicit",
        alpha=float(chosen.get("alpha", config["als"]["alpha"])),
        reg_param=float(chosen.get("reg_param", config["als"]["reg_param"])),
    )


def flat_lists(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(lengths per row, all values) of an Arrow list column; a null list has length 0."""
    lens = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    return lens, pc.list_flatten(column).to_numpy(zero_copy_only=False)


def score_batch(
    batch: pa.RecordBatch,
    item_ids: np.ndarray,
    vt: np.ndarray,
    pos: np.ndarray,
    n: int,
    rows: int,
    explain: Explain | None = None,
    gram: np.ndarray | None = None,
    rules: ListRules | None = None,
) -> pa.RecordBatch:
    """Top-k of one Arrow batch: seen items as (row, column) pairs once, then blocks of `rows` users.
    A batch without `features` is EASE's: each user's row is their `seen` items (sparse).
    A batch with a `mask` column masks those items instead of `seen` (which stays the history that
    `because` decomposes); `rules` (ListRules) block items and cap values for every row. Lists are
    read and written as Arrow buffers, with no Python object per row."""
    k = min(n, item_ids.size)
    m = batch.num_rows
    users = batch.column("user_idx").to_numpy(zero_copy_only=False)
    seen_rows, cols, inside = _pairs(batch.column("seen"), pos)
    if k == 0 or m == 0:
        part, top = np.zeros((m, k), np.int64), np.zeros((m, k), np.float32)
    elif "features" in batch.schema.names:
        u = pc.list_flatten(batch.column("features")).to_numpy(zero_copy_only=False).astype(np.float32).reshape(m, -1)
    else:
        u = _histories(seen_rows, cols, m, item_ids.size)
    fitted_w = flat_lists(batch.column("weights"))[1].astype(np.float64)[inside] if explain else None
    mask_rows, mask_cols = (
        (seen_rows, cols) if "mask" not in batch.schema.names else _pairs(batch.column("mask"), pos)[:2]
    )
    blocked, codes = rules.columns(item_ids) if rules is not None else (None, None)
    if k and m:
        parts, tops = [], []
        for start in range(0, m, rows):
            scores = u[start : start + rows] @ vt
            lo, hi = np.searchsorted(mask_rows, [start, start + rows])
            scores[mask_rows[lo:hi] - start, mask_cols[lo:hi]] = -np.inf
            if blocked is not None:
                scores[:, blocked] = -np.inf
            p, t = (
                top_k_rows(scores, item_ids, k)
                if codes is None
                else capped_top_k(scores, item_ids, k, codes, rules.cap)
            )
            parts.append(p)
            tops.append(t)
        part, top = np.concatenate(parts), np.concatenate(tops)
    keep = np.isfinite(top).ravel()
    arrays = [
        pa.array(np.repeat(users, k)[keep].astype(np.int32)),
        pa.array(np.tile(np.arange(1, k + 1), m)[keep].astype(np.int32)),
        pa.array(item_ids[part].ravel()[keep].astype(np.int32)),
        pa.array(top.ravel()[keep].astype(np.float32)),
    ]
    names = ["user_idx", "rank", "item_idx", "score"]
    if explain:
        arrays.append(because_column(explain, vt, gram, item_ids, seen_rows, cols, fitted_w, part, keep))
        names.append("because")
    return pa.RecordBatch.from_arrays(arrays, names=names)


def _histories(rows: np.ndarray, cols: np.ndarray, m: int, n: int) -> Any:
    """EASE's rows of X (each user's distinct seen items, 1 each) as a sparse matrix: X·B then costs
    history items x catalogue, where a dense X costs users x catalogue² (about 900x more at 9k items
    and ten items a user). scipy is imported here: the served pyfunc passes dense rows and needs none."""
    from scipy import sparse

    return sparse.csr_array((np.ones(cols.size, np.float32), (rows, cols)), shape=(m, n))


def _pairs(column: pa.Array, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column) of each item of a list column of item_idx that is in the catalogue (`pos`:
    column by item_idx, -1 outside it), rows ascending, and which of the flat items those are."""
    lens, flat = flat_lists(column)
    flat = flat.astype(np.int64)
    rows = np.repeat(np.arange(lens.size), lens)  # sorted: a block's pairs are one slice
    cols = np.full(flat.size, -1)
    inside = flat < pos.size
    cols[inside] = pos[flat[inside]]
    inside = cols >= 0
    return rows[inside], cols[inside], inside


def _normal_equations(
    vt: np.ndarray,
    gram: np.ndarray | None,
    owners: np.ndarray,
    history: np.ndarray,
    weights: np.ndarray,
    n_users: int,
    solver: Solver,
) -> tuple[np.ndarray, np.ndarray]:
    """(A + reg_param n I per user: users x rank x rank, c_j y_j per history item: users x H x rank),
    padded to the longest history H with zeros: the system Spark's ALS solves for a user's factors
    x = (A + reg_param n I)^-1 sum_j c_j y_j with the item factors fixed.

    Implicit (Spark's form): A = Y'Y + sum_j alpha |r_j| y_j y_j', c_j = 1 + alpha r_j for r_j > 0
    (else 0), n = the positive pairs; explicit: A = sum_j y_j y_j', c_j = r_j, n = the rated pairs.
    `vt` holds the item factors as columns; `owners` (user rows 0..n_users-1, sorted), `history`
    (columns) and `weights` (fit ratings) are the users' pairs; `gram` is Y'Y (implicit). A user with
    nothing to fit gets A = I and no terms (factors 0).
    """
    implicit, alpha, reg_param = solver
    rank = vt.shape[0]
    counts = np.bincount(owners, minlength=n_users)
    slot = np.arange(owners.size) - np.repeat(np.cumsum(counts) - counts, counts)
    yh = np.zeros((n_users, max(int(counts.max(initial=0)), 1), rank))
    yh[owners, slot] = vt[:, history].T
    r = np.zeros(yh.shape[:2])
    r[owners, slot] = weights
    if implicit:
        a = gram + np.einsum("uhr,uh,uhs->urs", yh, alpha * np.abs(r), yh, optimize=True)
        c, count = np.where(r > 0, 1.0 + alpha * r, 0.0), (r > 0).sum(axis=1)
    else:
        a, c, count = np.einsum("uhr,uhs->urs", yh, yh, optimize=True), r, counts
    a[:, np.arange(rank), np.arange(rank)] += reg_param * count[:, None]
    a[count == 0] = np.eye(rank)
    return a, yh * c[:, :, None]


def explain_block(
    vt: np.ndarray,
    gram: np.ndarray | None,
    owners: np.ndarray,
    history: np.ndarray,
    weights: np.ndarray,
    targets: np.ndarray,
    implicit: bool,
    alpha: float,
    reg_param: float,
) -> np.ndarray:
    """(users x targets x H) contributions of each user's history items to each target's score,
    padded to the longest history H with zeros; each (user, target) sums to the score the user's
    factors give the target.

    ALS solves for the user's vector x = W b, with W = (A + reg_param n I)^-1 and b = sum_j c_j y_j
    (`_normal_equations`), so the score y_i'x splits into one term per history item j: c_j y_i' W y_j.
    `targets` (U x k) are columns. All users are solved at once (stacked LAPACK). Exact for the
    unconstrained solver (als.nonnegative=false) at the factors the model ends with.
    """
    solver = Solver(implicit, alpha, reg_param)
    a, cy = _normal_equations(vt, gram, owners, history, weights, targets.shape[0], solver)
    wy = np.linalg.solve(a, np.moveaxis(vt[:, targets], 0, 1).astype(np.float64))  # W y_i per target: users x rank x k
    return np.einsum("uhr,urk->ukh", cy, wy, optimize=True)


def fold_in_block(
    vt: np.ndarray,
    gram: np.ndarray | None,
    owners: np.ndarray,
    history: np.ndarray,
    weights: np.ndarray,
    n_users: int,
    solver: Solver,
) -> np.ndarray:
    """(n_users x rank) factors of users from their histories with the item factors fixed: the
    least-squares solve every ALS iteration ends with (`_normal_equations`), so folding in a
    training user's own fit pairs gives back the model's factors for them."""
    a, cy = _normal_equations(vt, gram, owners, history, weights, n_users, solver)
    return np.linalg.solve(a, cy.sum(axis=1)[:, :, None])[:, :, 0]


def fold_in_batch(
    batch: pa.RecordBatch, vt: np.ndarray, pos: np.ndarray, gram: np.ndarray | None, solver: Solver
) -> pa.RecordBatch:
    """(id, features) of one Arrow batch of histories (user_idx, items, weights); users left with
    nothing to fit (no positive implicit rating, or no item with factors) get no row."""
    m, rank = batch.num_rows, vt.shape[0]
    owners, cols, inside = _pairs(batch.column("items"), pos)
    weights = flat_lists(batch.column("weights"))[1].astype(np.float64)[inside]
    counts = np.bincount(owners, minlength=m)
    x = np.zeros((m, rank), np.float32)
    for chunk, pair, local, _ in chunked_pairs(counts, rank):
        x[chunk] = fold_in_block(vt, gram, local, cols[pair], weights[pair], chunk.size, solver)
    fitted = np.bincount(owners[weights > 0] if solver.implicit else owners, minlength=m) > 0
    users = batch.column("user_idx").to_numpy(zero_copy_only=False)[fitted].astype(np.int32)
    offsets = pa.array(np.arange(0, (users.size + 1) * rank, rank, dtype=np.int32))
    features = pa.ListArray.from_arrays(offsets, pa.array(x[fitted].ravel()))
    return pa.RecordBatch.from_arrays([pa.array(users), features], names=["id", "features"])


def with_unit_weights(batch: pa.RecordBatch) -> pa.RecordBatch:
    """`batch` with `weights` (1 per history item: every pair counts, which `because` reads); with no
    `features` column, score_batch scores each user's row of X from `seen`, sparse."""
    seen = batch.column("seen")
    lens = np.diff(seen.offsets.to_numpy())
    ones = pa.ListArray.from_arrays(
        pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)), pa.array(np.ones(int(lens.sum())))
    )
    extra = ["mask"] if "mask" in batch.schema.names else []  # masked items, passed through
    return pa.RecordBatch.from_arrays(
        [batch.column("user_idx"), seen, ones, *map(batch.column, extra)],
        names=["user_idx", "seen", "weights", *extra],
    )


def ease_block(b: np.ndarray, owners: np.ndarray, history: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(users x targets x H) contributions for EASE, padded with zeros: a user's score for item t
    is the sum of B[h, t] over their history items h, so each term is one cell of B."""
    counts = np.bincount(owners, minlength=targets.shape[0])
    slot = np.arange(owners.size) - np.repeat(np.cumsum(counts) - counts, counts)
    out = np.zeros((targets.shape[0], targets.shape[1], max(int(counts.max(initial=0)), 1)))
    out[owners, :, slot] = b[history[:, None], targets[owners]]
    return out


def explain_scores(
    vt: np.ndarray,
    gram: np.ndarray | None,
    history: np.ndarray,
    weights: np.ndarray,
    targets: np.ndarray,
    implicit: bool,
    alpha: float,
    reg_param: float,
) -> np.ndarray:
    """One user's (targets x history) contributions: `explain_block` for a single user."""
    block = explain_block(
        vt, gram, np.zeros(history.size, np.int64), history, weights, targets[None, :], implicit, alpha, reg_param
    )
    return block[0][:, : history.size]


# Users explained per stacked solve: keeps users x longest history x rank doubles near 16 MB.
EXPLAIN_CELLS = 2_000_000


def _chunks(counts: np.ndarray, rank: int) -> Iterator[np.ndarray]:
    """User rows in groups of similar history length, each group's padded block within EXPLAIN_CELLS."""
    order = np.argsort(counts, kind="stable")
    i = 0
    while i < order.size:
        j = order.size
        while j > i + 1 and (j - i) * max(int(counts[order[j - 1]]), 1) * rank > EXPLAIN_CELLS:
            j = i + max(1, EXPLAIN_CELLS // (rank * max(int(counts[order[j - 1]]), 1)))
        yield order[i:j]
        i = j


def chunked_pairs(counts: np.ndarray, width: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(user rows, their pairs' positions, each pair's row within the chunk, its slot in the row's
    history) per `_chunks` group, for pairs sorted by user with `counts` per user: how the stacked
    solves walk a batch without padding every user to the batch's longest history."""
    starts = np.cumsum(counts) - counts
    for chunk in _chunks(counts, width):
        sizes = counts[chunk]
        slot = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        yield chunk, np.repeat(starts[chunk], sizes) + slot, np.repeat(np.arange(chunk.size), sizes), slot


def because_column(
    explain: Explain,
    vt: np.ndarray,
    gram: np.ndarray | None,
    item_ids: np.ndarray,
    owners: np.ndarray,
    history: np.ndarray,
    weights: np.ndarray,
    part: np.ndarray,
    keep: np.ndarray,
) -> pa.Array:
    """`because` for every kept (user, rank) slot of `part` (users x k columns): the BECAUSE_TOP
    history items with the largest positive contributions, with their share of the score."""
    n_users, k = part.shape
    fitted = np.isfinite(weights)  # null weight: seen, but left out of the fit
    owners, history, weights = owners[fitted], history[fitted], weights[fitted]
    counts = np.bincount(owners, minlength=n_users)
    best_col = np.zeros((n_users, k, BECAUSE_TOP), np.int64)  # the history item's column
    best_c = np.zeros((n_users, k, BECAUSE_TOP))  # its contribution (0: none)
    total = np.ones((n_users, k))
    for chunk, pair, local, slot in chunked_pairs(counts, k if explain.ease else vt.shape[0]):
        contrib = (
            ease_block(vt, local, history[pair], part[chunk])
            if explain.ease
            else explain_block(
                vt,
                gram,
                local,
                history[pair],
                weights[pair],
                part[chunk],
                explain.implicit,
                explain.alpha,
                explain.reg_param,
            )
        )
        cols = np.zeros((chunk.size, contrib.shape[2]), np.int64)
        cols[local, slot] = history[pair]
        best = np.argsort(-contrib, axis=2, kind="stable")[:, :, :BECAUSE_TOP]
        w = best.shape[2]
        best_c[chunk, :, :w] = np.take_along_axis(contrib, best, axis=2)
        best_col[chunk, :, :w] = np.take_along_axis(np.broadcast_to(cols[:, None, :], contrib.shape), best, axis=2)
        total[chunk] = contrib.sum(axis=2)
    best_col, best_c = best_col.reshape(-1, BECAUSE_TOP)[keep], best_c.reshape(-1, BECAUSE_TOP)[keep]
    total = total.reshape(-1)[keep]
    valid = best_c > 0
    idx = item_ids[best_col[valid]]
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    entries = pa.StructArray.from_arrays(
        [
            pa.array(explain.item_ids[idx], pa.string()),
            pa.array(explain.names[idx], pa.string()),
            pa.array((best_c / total[:, None])[valid].astype(np.float32)),
        ],
        names=["item_id", "name", "share"],
    )
    return pa.ListArray.from_arrays(pa.array(offsets), entries)


def top_k_rows(scores: np.ndarray, item_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(columns, scores) of each row's k best, by score descending then item id: every item tied
    with the k-th score is a candidate, so which of them is kept never depends on argpartition's
    arbitrary choice (the evaluated baseline and the served fallback agree on ties).

    A wide row is cut into `chunk_width` chunks (chunk j: columns j, j + C, j + 2C, ... for C
    chunks, so their maxima reduce contiguous columns) and its candidates are the scores, in the k
    chunks with the largest maxima and in the columns after the last whole chunk, at or above t,
    the smallest of those k maxima: k scores reach t, so the k-th score is at least t, and every
    other chunk's scores are below t. Exact, ties included, for float scores and distinct item
    ids; a row where more than k chunk maxima reach t (a tie among maxima, -inf from masked items,
    NaN) or with NaN after the last chunk takes the full row's partition (integer-like scores, as
    the popularity baseline's counts, mostly do: they pay both passes).
    `python -m bench.topk` times both on random blocks (0.06x on 50,000 items, 0.30x on 3,000).

    >>> cols, top = top_k_rows(np.array([[0.5, 0.9, 0.5, 0.1]]), np.array([7, 3, 2, 9]), 2)
    >>> cols.tolist(), top.tolist()  # 0.9 first; of the two tied 0.5s, item 2 before item 7
    ([[1, 2]], [[0.9, 0.5]])
    """
    m, n = scores.shape
    w = chunk_width(n)
    chunks = n // w
    if k == 0 or m == 0 or chunks < CHUNKS_PER_K * k:
        return _top_k_of(scores, None, item_ids, k)
    width = chunks * w
    maxima = scores[:, :width].reshape(m, w, chunks).max(axis=1)
    best = np.argpartition(maxima, chunks - k, axis=1)[:, chunks - k :]  # k chunks per row, unordered
    t = np.take_along_axis(maxima, best, axis=1).min(axis=1)
    exact = (maxima >= t[:, None]).sum(axis=1) == k  # no other chunk reaches t
    exact &= ~np.isnan(scores[:, width:]).any(axis=1)  # the tail has no maximum to say so
    cols = (np.arange(w)[None, :, None] * chunks + best[:, None, :]).reshape(m, -1)
    cols = np.concatenate([cols, np.broadcast_to(np.arange(width, n), (m, n - width))], axis=1)
    if scores.flags.c_contiguous:
        picked = np.take(scores, cols + np.arange(m)[:, None] * n)
    else:
        picked = np.take_along_axis(scores, cols, axis=1)
    out_c, out_s = np.zeros((m, k), np.int64), np.full((m, k), -np.inf, scores.dtype)
    ok = np.flatnonzero(exact)
    if ok.size:
        out_c[ok], out_s[ok] = _top_k_of(picked[ok], cols[ok], item_ids, k, at_least=t[ok])
    rest = np.flatnonzero(~exact)
    if rest.size:
        out_c[rest], out_s[rest] = _top_k_of(scores[rest], None, item_ids, k)
    return out_c, out_s


CHUNKS_PER_K = 4  # with fewer chunks than 4k, most of a row is a candidate: the full partition


def chunk_width(n: int) -> int:
    """Scores per chunk in top_k_rows's first pass: the power of two nearest √n / 2, where the
    measured optimum lay (32 for 3,000 items, 64 for 10,000, 128 for 50,000).

    >>> chunk_width(3_000), chunk_width(10_000), chunk_width(50_000)
    (32, 64, 128)
    """
    return 2 ** max(0, round(np.log2(max(n, 1) ** 0.5 / 2)))


def _top_k_of(
    scores: np.ndarray, cols: np.ndarray | None, item_ids: np.ndarray, k: int, at_least: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """top_k_rows on candidate `scores` whose columns are `cols` (per row; None: the scores are the
    whole rows): every candidate at or above each row's k-th score (found by partition, or
    `at_least`: a bound at or below it that k of the row's candidates reach) sorted by score then
    item id, the first k kept; a slot with no candidate (NaN rows) is column 0 with score -inf."""
    m, n = scores.shape
    if at_least is not None:
        kth = at_least
    elif k < n:  # kth from the end: measured faster than partitioning the negated scores
        kth = np.partition(scores, n - k, axis=1)[:, n - k]
    else:
        kth = np.full(m, -np.inf, np.float32)
    r, c = np.nonzero(scores >= kth[:, None])  # >= k per row; more only where there are ties at the k-th
    s = scores[r, c]
    if cols is not None:
        c = cols[r, c]
    order = np.lexsort((item_ids[c], -s, r))
    r, c, s = r[order], c[order], s[order]
    place = np.arange(r.size) - np.searchsorted(r, np.arange(m))[r]  # 0, 1, ... within each row
    take = place < k
    out_c, out_s = np.zeros((m, k), np.int64), np.full((m, k), -np.inf, scores.dtype)  # -inf: no candidate
    out_c[r[take], place[take]], out_s[r[take], place[take]] = c[take], s[take]
    return out_c, out_s


def capped_top_k(
    scores: np.ndarray, item_ids: np.ndarray, k: int, codes: np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k_rows` with at most `cap` columns of one `codes` value per row (code -1: uncapped): the
    list a walk down the scores keeps when it skips an item whose value already has `cap`.

    The walk runs on each row's best CAP_DEPTH x k columns at once (an item's place among its
    value's items so far decides it, and that depends on earlier items only, so the walk over a
    prefix is the walk over the row); a row whose prefix yields fewer than k items while more
    remain is redone exactly by `_capped_by_value`. Rows with fewer than k candidates end in -inf
    scores, which the caller drops.

    >>> s = np.array([[0.9, 0.8, 0.7, 0.1]])
    >>> cols, top = capped_top_k(s, np.array([0, 1, 2, 3]), 3, np.array([5, 5, 5, 6]), 2)
    >>> cols.tolist(), top.tolist()  # the third item of value 5 gives way to the best of value 6
    ([[0, 1, 3]], [[0.9, 0.8, 0.1]])
    """
    m, n = scores.shape
    depth = min(n, CAP_DEPTH * k)
    c, s = top_k_rows(scores, item_ids, depth)
    v = codes[c].ravel()
    rows, place = np.repeat(np.arange(m), depth), np.tile(np.arange(depth), m)
    order = np.lexsort((place, v, rows))  # by row, value, then place in the row
    start = np.r_[True, (rows[order][1:] != rows[order][:-1]) | (v[order][1:] != v[order][:-1])]
    first = np.maximum.accumulate(np.where(start, np.arange(order.size), 0))
    seen_before = np.empty(order.size, np.int64)
    seen_before[order] = np.arange(order.size) - first  # items of the same value earlier in the row
    keep = ((seen_before < cap) | (v < 0)).reshape(m, depth)
    count = np.cumsum(keep, axis=1)
    take = keep & (count <= k)
    out_c, out_s = np.zeros((m, k), np.int64), np.full((m, k), -np.inf, scores.dtype)
    r, p = np.nonzero(take)
    out_c[r, count[r, p] - 1], out_s[r, count[r, p] - 1] = c[r, p], s[r, p]
    short = (count[:, -1] < k) & (depth < n) & np.isfinite(s[:, -1])  # the prefix ran out, the row did not
    if short.any():
        out_c[short], out_s[short] = _capped_by_value(scores[short], item_ids, k, codes, cap)
    return out_c, out_s


CAP_DEPTH = 4  # capped_top_k walks each row's best 4k columns first


def _capped_by_value(
    scores: np.ndarray, item_ids: np.ndarray, k: int, codes: np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray]:
    """capped_top_k exactly, for any row: each value's own best `cap` columns (uncapped: k), then
    the best k of those (an item outside its value's best `cap` is always skipped; one inside
    never is)."""
    cand_c, cand_s = [], []
    for code in np.unique(codes):
        own = np.flatnonzero(codes == code)
        c, s = top_k_rows(scores[:, own], item_ids[own], min(k if code < 0 else cap, own.size))
        cand_c.append(own[c])
        cand_s.append(s)
    c, s = np.concatenate(cand_c, axis=1), np.concatenate(cand_s, axis=1)
    if c.shape[1] < k:
        short = k - c.shape[1]
        c = np.concatenate([c, np.zeros((len(c), short), np.int64)], axis=1)
        s = np.concatenate([s, np.full((len(s), short), -np.inf, s.dtype)], axis=1)
    order = np.lexsort((item_ids[c], -s))[:, :k]
    return np.take_along_axis(c, order, axis=1), np.take_along_axis(s, order, axis=1)


def indexed(idx: np.ndarray, values: np.ndarray, size: int | None = None) -> np.ndarray:
    """`values` placed at their item_idx in an object array (None elsewhere), `size` long (default:
    up to the largest index): item lookups by index for the explanation code."""
    out = np.full(int(idx.max(initial=-1)) + 1 if size is None else size, None, object)
    out[idx] = values
    return out


def explain_for(config: dict[str, Any], item_ids: np.ndarray, names: np.ndarray) -> Explain:
    """The Explain of a saved model's config (its Solver; EASE when the model serves EASE)."""
    implicit, alpha, reg_param = solver_for(config)
    return Explain(implicit, alpha, reg_param, item_ids, names, ease=config.get("family") == "ease")
