"""The served model: an MLflow pyfunc that recommends from a saved model directory without Spark.

The saved model (see recs/model.py) is Parquet throughout (ALS writes its factors as Parquet too), so
the pyfunc reads it with pyarrow: user and item factors (or EASE's B, which scores a user's
history), the id maps, the seen pairs with their fit weights and the popularity order. `predict`
takes a frame of `user_id` (and optionally `n`) and returns the same rows the recommend job writes
for those users: top-n with seen items excluded and `because`, or the popular items for users the
model cannot score (`source` popular, or popular_unknown_user for a user it never saw; score = the
share of its users who chose the item). No JVM starts.

An optional `history` column (a list of item ids per row) serves a user from that history, as
`recommend --fold-in` serves users with new events: ALS folds it in (kernels.fold_in_block), EASE
scores it; `source` als_fold_in or ease_fold_in. So a brand-new user is served from their first
clicks. Each entry counts as one event of weight 1 (an item listed twice weighs 2), turned into the
fit rating the model was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import yaml
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema
from mlflow.types.schema import Array, Object, Property

from recsys_spark.names import ALS, ALS_FOLD_IN, EASE, EASE_FOLD_IN, POPULAR, UNKNOWN_USER
from recsys_spark.recs.kernels import (
    ListRules,
    block_rows,
    explain_for,
    fold_in_block,
    indexed,
    score_batch,
    solver_for,
)

COLUMNS = ["user_id", "rank", "item_id", "score", "source", "because"]
SLICE_ROWS = 1024  # request rows per score_batch call: bounds an EASE slice's binary histories


def _table(path: Path) -> pa.Table:
    return ds.dataset(str(path), format="parquet", exclude_invalid_files=True).to_table()


def _read(path: Path) -> pd.DataFrame:
    return _table(path).to_pandas()


def _factors(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """ALS's (id, features) Parquet as ids and one float32 matrix, straight from Arrow's flat values
    (no Python object per row: a million users load in a fraction of a second)."""
    t = _table(path)
    values = t.column("features").combine_chunks().flatten().to_numpy().astype(np.float32)
    return t.column("id").to_numpy().astype(np.int64), values.reshape(t.num_rows, -1) if t.num_rows else values.reshape(
        0, 0
    )


WHY = Array(
    Object(
        [
            Property("item_id", DataType.string),
            Property("name", DataType.string, required=False),
            Property("share", DataType.float),
        ]
    )
)
SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "n", required=False),
            ColSpec(Array(DataType.string), "history", required=False),
            ColSpec(Array(DataType.string), "exclude", required=False),
            ColSpec(Array(DataType.string), "candidates", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("float", "score"),
            ColSpec("string", "source"),
            ColSpec(WHY, "because", required=False),
        ]
    ),
)
EXAMPLE = '{"dataframe_split": {"columns": ["user_id", "n"], "data": [["u0000001", 10]]}}'
HISTORY_EXAMPLE = (
    '{"dataframe_split": {"columns": ["user_id", "history"], "data": [["new-user", ["i000001", "i000002"]]]}}'
)
LIST_EXAMPLE = '{"dataframe_split": {"columns": ["user_id", "%s"], "data": [["u0000001", ["i000001", "i000002"]]]}}'


def item_lists(frame: pd.DataFrame, column: str) -> list[list[str] | None]:
    """The `column` (history, exclude or candidates) of each request row, None where absent: a list
    of item id strings, else an MlflowException naming the rows and the fix."""
    if column not in frame.columns:
        return [None] * len(frame)
    out, bad = [], []
    for i, h in enumerate(frame[column]):
        if h is None or (isinstance(h, float) and np.isnan(h)):
            out.append(None)
        elif isinstance(h, (list, tuple, np.ndarray)) and all(isinstance(v, str) and v.strip() for v in h):
            out.append([v.strip() for v in h])
        else:
            out.append(None)
            bad.append(i)
    if bad:
        example = HISTORY_EXAMPLE if column == "history" else LIST_EXAMPLE % column
        raise MlflowException.invalid_parameter_value(
            f"{column} must be a list of item id strings; rows {bad[:5]} are not "
            f"({[_shown(frame[column].tolist()[i]) for i in bad[:5]]}): send e.g. {example}"
        )
    return out


def requests(frame: Any, default_n: int) -> list[tuple[str, int]]:
    """(user id, n) per row of a request frame, ids trimmed as ingest trims them; a bad request is
    an MlflowException naming the rows and the fix (HTTP 400 from `mlflow models serve`)."""
    if not isinstance(frame, pd.DataFrame) or "user_id" not in frame.columns:
        got = list(frame.columns) if isinstance(frame, pd.DataFrame) else type(frame).__name__
        raise MlflowException.invalid_parameter_value(f"the request needs a user_id column (got {got}): send {EXAMPLE}")
    ids = frame["user_id"].map(lambda v: v.strip() if isinstance(v, str) else None)
    bad = [i for i, v in enumerate(ids) if not v]
    if bad:
        raise MlflowException.invalid_parameter_value(
            f"user_id must be a non-empty string; rows {bad[:5]} are not "
            f"({[frame['user_id'].tolist()[i] for i in bad[:5]]}): send ids as strings, e.g. {EXAMPLE}"
        )
    if "n" not in frame.columns:
        return [(u, default_n) for u in ids]
    ns = pd.to_numeric(frame["n"], errors="coerce")
    bad = [
        i
        for i, (raw, v) in enumerate(zip(frame["n"], ns, strict=True))
        if pd.notna(raw) and not (v >= 1 and v == int(v))
    ]
    if bad:
        shown = [_shown(frame["n"].tolist()[i]) for i in bad[:5]]
        raise MlflowException.invalid_parameter_value(
            f"n must be a whole number of at least 1; rows {bad[:5]} have {shown}: "
            f"leave n out for the model's {default_n}"
        )
    return [(u, int(v) if pd.notna(v) else default_n) for u, v in zip(ids, ns, strict=True)]


def _shown(value: Any) -> Any:
    """A request value as its sender wrote it: 0.0 (a number column's 0) shows as 0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Recommender(mlflow.pyfunc.PythonModel):
    """Top-n per user from the factors of a saved model, as the recommend job computes them."""

    def load_context(self, context: Any) -> None:
        self.load(Path(context.artifacts["model"]))

    def load(self, root: Path) -> None:
        cfg = yaml.safe_load((root / "config.yaml").read_text())
        users, items = _read(root / "users"), _read(root / "items")
        self.ease = (root / "ease").is_dir()  # EASE serves: B by column in the item-factor layout
        user_ids, user_factors = _factors(root / "als" / "userFactors")
        self.item_idx, item_factors = _factors(root / ("ease" if self.ease else "als/itemFactors"))
        if self.ease:  # B's rows follow the sorted item_idx, as its columns must
            order = np.argsort(self.item_idx)
            self.item_idx, item_factors = self.item_idx[order], item_factors[order]
        self.n = int(cfg.get("recommend", {}).get("n", 10))
        self.vt = np.ascontiguousarray(item_factors.T)
        size = int(max(items["item_idx"].max(), self.item_idx.max(initial=0))) + 1
        self.ids = ids = indexed(items["item_idx"].to_numpy(), items["item_id"].to_numpy(), size)
        self.pos = np.full(size, -1)  # item_idx -> column of vt
        self.pos[self.item_idx] = np.arange(self.item_idx.size)
        self.user_row = dict(zip(users["user_id"], users["user_idx"], strict=True))
        self.factor_row = dict(zip(user_ids.tolist(), range(user_ids.size), strict=True))
        self.u = user_factors if user_ids.size else np.zeros((0, self.vt.shape[0]), np.float32)
        seen = _table(root / "seen")
        users_of, items_of = (seen.column(c).to_numpy().astype(np.int64) for c in ("user_idx", "item_idx"))
        order = np.argsort(
            users_of * (int(items_of.max(initial=0)) + 1) + items_of
        )  # by user, then item: a history is a slice
        self.seen_users, self.seen_items = users_of[order], items_of[order]
        self.seen_weights = (
            seen.column("weight").to_numpy(zero_copy_only=False).astype(np.float64)[order]
            if "weight" in seen.column_names
            else None
        )
        popular = _read(root / "popular")  # a rank-1 model for score_batch: every user [1], item [popularity]
        self.pop_idx = popular["item_idx"].to_numpy(np.int64)
        self.pop_vt = popular["popularity"].to_numpy(np.float32)[None, :]
        self.pop_pos = np.full(size, -1)
        self.pop_pos[self.pop_idx] = np.arange(self.pop_idx.size)
        self.pop_block = block_rows(self.pop_idx.size)
        self.rules = _rules(root, size)
        exclude_seen = cfg.get("recommend", {}).get("exclude_seen", "all")
        self.mask_seen, self.mask_history = exclude_seen == "all", exclude_seen != "none"
        # which seen pairs are masked: all, none, or (exclude_seen [types]) those train flagged; a model
        # saved before train flagged them masks all its seen pairs, as it did then
        typed = seen.column("masked").to_numpy(zero_copy_only=False)[order] if "masked" in seen.column_names else None
        self.seen_masked = typed if typed is not None else np.full(order.size, self.mask_history)
        self.share = 1.0 / max(len(users), 1)  # popular rows score the share of users (as topn.popular_lists)
        self.explain = None if self.seen_weights is None else explain_for(cfg, ids, np.full(size, None, object))
        self.gram = None if self.ease else self.vt.astype(np.float64) @ self.vt.T.astype(np.float64)
        self.solver = solver_for(cfg)
        in_catalogue = self.seen_items < self.pos.size
        in_catalogue[in_catalogue] = self.pos[self.seen_items[in_catalogue]] >= 0
        self.scoreable = (  # users scored by the model: EASE, a history item in B; ALS, factors
            set(np.unique(self.seen_users[in_catalogue]).tolist()) if self.ease else set(self.factor_row)
        )
        self.block = block_rows(self.item_idx.size)
        self.item_row = dict(zip(items["item_id"], items["item_idx"], strict=True))
        chosen, als = cfg.get("chosen", {}), cfg["als"]
        self.log_rating = self.solver.implicit and chosen.get("confidence", als["confidence"]) == "log"
        self.epsilon = float(als["epsilon"])
        self.nonnegative = bool(als.get("nonnegative", False))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Rows in request order. Every list goes through `score_batch`, the kernel of the Spark
        top-N (seen items and the row's `exclude` masked, the model's item rules and the row's
        `candidates` applied before the cut): known users the model scores together, in blocks;
        users it never saw together, on popularity; a row with a history, or a known user the model
        cannot score, on its own."""
        asked = requests(model_input, self.n)
        wanted, excluded = item_lists(model_input, "history"), item_lists(model_input, "exclude")
        frames = []
        for shelf, rows in _by_candidates(item_lists(model_input, "candidates")):
            rules = self.rules_for(shelf)
            idx = {i: self.user_row.get(asked[i][0]) for i in rows}
            batched = [i for i in rows if wanted[i] is None and idx[i] is not None and int(idx[i]) in self.scoreable]
            unknown = [i for i in rows if wanted[i] is None and idx[i] is None]
            frames.append(self.scored([asked[i] for i in batched], np.array(batched, np.int64), excluded, rules))
            frames.append(self.unknown([asked[i] for i in unknown], np.array(unknown, np.int64), excluded, rules))
            for i in sorted(set(rows) - set(batched) - set(unknown)):
                frames.append(self.recommend(*asked[i], wanted[i], excluded[i], rules).assign(_pos=i))
        out = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
        if out is None:
            return pd.DataFrame(columns=COLUMNS)
        return out.sort_values(["_pos", "rank"], kind="stable").drop(columns="_pos").reset_index(drop=True)

    def rules_for(self, shelf: tuple[str, ...] | None) -> ListRules | None:
        """The model's item rules, narrowed to a request's candidate items."""
        if shelf is None:
            return self.rules
        ok = np.zeros(self.pos.size, bool)
        ok[[self.item_row[i] for i in shelf if i in self.item_row]] = True
        base = self.rules or ListRules()
        if base.allowed is not None:
            ok[: base.allowed.size] &= base.allowed
            ok[base.allowed.size :] = False
        return ListRules(ok, base.groups, base.cap)

    def _masks(self, masked: list[np.ndarray], exclude: list[list[str] | None]) -> list[np.ndarray] | None:
        """Each row's masked items (item_idx): its `masked` seen items (as exclude_seen says, see
        seen_masked) and its `exclude`; None when that is all its seen items (score_batch's default)."""
        if self.mask_seen and not any(exclude):
            return None
        out = []
        for items, more in zip(masked, exclude, strict=True):
            own = np.array([self.item_row[i] for i in more or () if i in self.item_row], np.int64)
            out.append(np.union1d(items, own))
        return out

    def scored(
        self,
        asked: list[tuple[str, int]],
        where: np.ndarray,
        excluded: list[list[str] | None] | None = None,
        rules: ListRules | None = None,
    ) -> pd.DataFrame:
        """The model's top-n of known, scoreable users (request rows `where`; `excluded` by request
        row), in slices of SLICE_ROWS through `score_batch`; `_pos` is each row's request position."""
        if not asked:
            return pd.DataFrame()
        rows = np.array([self.user_row[u] for u, _ in asked], np.int64)
        ns = np.array([n for _, n in asked], np.int64)
        parts = []
        for start in range(0, rows.size, SLICE_ROWS):
            users = rows[start : start + SLICE_ROWS]
            exclude = [excluded[i] for i in where[start : start + SLICE_ROWS]] if excluded and any(excluded) else None
            batch = self._user_batch(users, start, exclude)
            n = int(ns.max())
            parts.append(
                score_batch(batch, self.item_idx, self.vt, self.pos, n, self.block, self.explain, self.gram, rules)
            )
        return self._rows(pa.Table.from_batches(parts), asked, where, EASE if self.ease else ALS)

    def _rows(
        self, out: pa.Table, asked: list[tuple[str, int]], where: np.ndarray, source: Any, share: float = 1.0
    ) -> pd.DataFrame:
        """Request rows of score_batch's output (`user_idx`: the position in `asked`), cut to each
        row's n; `source` per output row or one for all; scores times `share` (popular: a share)."""
        row = out.column("user_idx").to_numpy()
        rank = out.column("rank").to_numpy().astype(np.int64)
        ns = np.array([n for _, n in asked], np.int64)
        keep = rank <= ns[row]
        because = (
            out.column("because").filter(pa.array(keep)).to_pylist()
            if "because" in out.column_names
            else [None] * int(keep.sum())
        )
        return pd.DataFrame(
            {
                "user_id": np.array([u for u, _ in asked], object)[row[keep]],
                "rank": rank[keep],
                "item_id": self.ids[out.column("item_idx").to_numpy()[keep]],
                "score": (out.column("score").to_numpy()[keep] * share).astype(np.float32),
                "source": source,
                "because": because,
                "_pos": where[row[keep]],
            }
        )

    def _user_batch(
        self, users: np.ndarray, start: int, exclude: list[list[str] | None] | None = None
    ) -> pa.RecordBatch:
        """score_batch's input for model users `users` (user_idx): each row's factors (ALS) or
        binary history over B's catalogue (EASE), its seen items and their fit weights, and its mask
        when `exclude` (by row) or an exclude_seen other than all asks for one; `user_idx` holds the row's
        position among the request's batched rows (this slice starts at `start`)."""
        m = users.size
        lo, hi = np.searchsorted(self.seen_users, users), np.searchsorted(self.seen_users, users + 1)
        lens = hi - lo
        flat = np.repeat(lo - (np.cumsum(lens) - lens), lens) + np.arange(int(lens.sum()))
        seen = self.seen_items[flat]
        if self.ease:
            cols = np.full(seen.size, -1)
            inside = seen < self.pos.size
            cols[inside] = self.pos[seen[inside]]
            x = np.zeros((m, self.vt.shape[0]), np.float32)
            x[np.repeat(np.arange(m), lens)[cols >= 0], cols[cols >= 0]] = 1.0
            weights = np.ones(seen.size)
        else:
            x = self.u[[self.factor_row[int(u)] for u in users]]
            weights = self.seen_weights[flat] if self.seen_weights is not None else np.full(seen.size, np.nan)
        offsets = np.concatenate([[0], np.cumsum(lens)])
        exclude = exclude or [None] * m
        flagged = self.seen_masked[flat]
        cut = np.concatenate([[0], np.cumsum(flagged)])[offsets[1:-1]]  # each row's masked seen items
        masks = None if self.mask_seen and not any(exclude) else self._masks(np.split(seen[flagged], cut), exclude)
        return _batch(np.arange(start, start + m), x, seen, weights, offsets, masks)

    def unknown(
        self,
        asked: list[tuple[str, int]],
        where: np.ndarray,
        excluded: list[list[str] | None] | None = None,
        rules: ListRules | None = None,
    ) -> pd.DataFrame:
        """Users the model never saw (request rows `where`): the most popular items of all, less the
        row's `exclude`, under the rules."""
        if not asked:
            return pd.DataFrame()
        m = len(asked)
        none = np.zeros(0, np.int64)
        masks = self._masks([none] * m, [excluded[i] for i in where] if excluded else [None] * m)
        batch = _batch(np.arange(m), np.ones((m, 1), np.float32), none, none, np.zeros(m + 1, np.int64), masks)
        n = max(n for _, n in asked)
        return self._rows(self._popular(batch, n, rules), asked, where, UNKNOWN_USER, self.share)

    def _popular(self, batch: pa.RecordBatch, n: int, rules: ListRules | None) -> pa.Table:
        """score_batch on popularity (a rank-1 model): the most popular items not masked, under `rules`."""
        out = score_batch(batch, self.pop_idx, self.pop_vt, self.pop_pos, n, self.pop_block, rules=rules)
        return pa.Table.from_batches([out])

    def history_pairs(self, history: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(columns of vt, fit ratings) of a request's history: its items in the model's catalogue,
        each entry one event of weight 1, as the model's fit rated a pair (models.fit_rating)."""
        idx = np.array([self.item_row[i] for i in history if i in self.item_row], np.int64)
        idx, counts = np.unique(idx[idx < self.pos.size], return_counts=True)
        ok = self.pos[idx] >= 0
        rating = counts[ok].astype(np.float64)
        return self.pos[idx[ok]], np.log1p(rating / self.epsilon) if self.log_rating else rating

    def recommend(
        self,
        user_id: str,
        n: int,
        history: list[str] | None = None,
        exclude: list[str] | None = None,
        rules: ListRules | None = None,
    ) -> pd.DataFrame:
        """One user's rows: the model's top-n (ALS or EASE) with reasons, from the request's history
        when one is given, or the popular fallback; `exclude` and `rules` as in `predict`."""
        idx = self.user_row.get(user_id)
        lo, hi = np.searchsorted(self.seen_users, [idx, idx + 1]) if idx is not None else (0, 0)
        seen, weights = self.seen_items[lo:hi], None
        masked = seen[self.seen_masked[lo:hi]]
        inside = seen < self.pos.size
        cols = np.full(seen.size, -1)
        cols[inside] = self.pos[seen[inside]]
        vector = None
        if history is not None:
            if not self.solver.implicit or (self.nonnegative and not self.ease):
                raise MlflowException.invalid_parameter_value(
                    "history serves implicit-feedback models fitted without als.nonnegative only (fold-in "
                    "solves the unconstrained normal equations): send user_id alone"
                )
            cols, weights = self.history_pairs(history)
            seen = np.union1d(seen, self.item_idx[cols])
            if self.mask_history:  # a history's events have no type: masked unless exclude_seen is none
                masked = np.union1d(masked, self.item_idx[cols])
            weights = np.ones(cols.size) if self.ease else weights  # EASE: every history item counts once
            if not self.ease and (weights > 0).any():
                vector = fold_in_block(self.vt, self.gram, np.zeros(cols.size, np.int64), cols, weights, 1, self.solver)
            scoreable = vector is not None or (self.ease and cols.size > 0)
        elif self.ease:  # a history in the catalogue is all EASE needs
            weights, cols = np.ones(int((cols >= 0).sum())), cols[cols >= 0]
            scoreable = cols.size > 0
        else:
            row = self.factor_row.get(int(idx)) if idx is not None else None
            scoreable = row is not None
            if scoreable:
                vector = self.u[row][None, :]
                weights = self.seen_weights[lo:hi][cols >= 0] if self.seen_weights is not None else None
                cols = cols[cols >= 0]
        masks = self._masks([masked], [exclude])
        one = np.zeros(1, np.int64)
        if not scoreable:  # unknown, or known but not scoreable: the most popular unseen items
            batch = _batch(one, np.ones((1, 1), np.float32), seen, np.full(seen.size, np.nan), [0, seen.size], masks)
            source = POPULAR if idx is not None else UNKNOWN_USER
            rows = self._rows(self._popular(batch, n, rules), [(user_id, n)], one, source, self.share)
            return rows.drop(columns="_pos")
        if self.ease:
            vector = np.zeros((1, self.vt.shape[0]), np.float32)
            vector[0, cols] = 1.0
        items = self.item_idx[cols]
        w = weights if weights is not None else np.full(items.size, np.nan)
        batch = _batch(one, vector.astype(np.float32), items, w, [0, items.size], masks or [seen])
        out = score_batch(batch, self.item_idx, self.vt, self.pos, n, self.block, self.explain, self.gram, rules)
        source = (EASE if self.ease else ALS) if history is None else (EASE_FOLD_IN if self.ease else ALS_FOLD_IN)
        return self._rows(pa.Table.from_batches([out]), [(user_id, n)], one, source).drop(columns="_pos")


def _rules(root: Path, size: int) -> ListRules | None:
    """The item rules train saved with the model (recs/filters.py), by item_idx, `size` long."""
    if not (root / "rules").is_dir():
        return None
    t = _read(root / "rules")
    idx = t["item_idx"].to_numpy(np.int64)
    allowed, groups = np.zeros(size, bool), np.full(size, -1, np.int64)
    allowed[idx], groups[idx] = t["allowed"].to_numpy(bool), t["value_code"].to_numpy(np.int64)
    cap = int(t["cap"].max()) if len(t) else 0
    return ListRules(allowed, groups if cap else None, cap)


def _by_candidates(shelves: list[list[str] | None]) -> list[tuple[tuple[str, ...] | None, list[int]]]:
    """Request rows grouped by their candidate set (None: no set): one scoring pass per group."""
    groups: dict[tuple[str, ...] | None, list[int]] = {}
    for i, shelf in enumerate(shelves):
        groups.setdefault(tuple(sorted(set(shelf))) if shelf is not None else None, []).append(i)
    return list(groups.items())


def _batch(
    users: np.ndarray,
    features: np.ndarray,
    seen: np.ndarray,
    weights: np.ndarray,
    offsets: Any,
    masks: list[np.ndarray] | None,
) -> pa.RecordBatch:
    """score_batch's input: `user_idx` `users`, `features` (rows x width), the rows' `seen` items and
    their fit `weights` (flat, split at `offsets`), and `mask` when `masks` (per row) is given."""
    m, width = features.shape
    offsets = pa.array(np.asarray(offsets).astype(np.int32))
    arrays = [
        pa.array(np.asarray(users).astype(np.int32)),
        pa.ListArray.from_arrays(
            pa.array(np.arange(0, (m + 1) * width, width, dtype=np.int32)), pa.array(features.ravel())
        ),
        pa.ListArray.from_arrays(offsets, pa.array(np.asarray(seen).astype(np.int32))),
        pa.ListArray.from_arrays(offsets, pa.array(np.asarray(weights).astype(np.float64))),
    ]
    names = ["user_idx", "features", "seen", "weights"]
    if masks is not None:
        lens = np.array([x.size for x in masks], np.int64)
        flat = np.concatenate(masks).astype(np.int32) if masks else np.zeros(0, np.int32)
        arrays.append(
            pa.ListArray.from_arrays(pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)), pa.array(flat))
        )
        names.append("mask")
    return pa.RecordBatch.from_arrays(arrays, names=names)
