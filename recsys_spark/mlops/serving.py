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
from mlflow.types.schema import Array

from recsys_spark.names import ALS, ALS_FOLD_IN, EASE, EASE_FOLD_IN, POPULAR, UNKNOWN_USER
from recsys_spark.recs.kernels import (
    because_column,
    block_rows,
    explain_for,
    fold_in_block,
    indexed,
    score_batch,
    solver_for,
    top_k_rows,
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


SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "n", required=False),
            ColSpec(Array(DataType.string), "history", required=False),
        ]
    )
)
EXAMPLE = '{"dataframe_split": {"columns": ["user_id", "n"], "data": [["u0000001", 10]]}}'
HISTORY_EXAMPLE = (
    '{"dataframe_split": {"columns": ["user_id", "history"], "data": [["new-user", ["i000001", "i000002"]]]}}'
)


def histories(frame: pd.DataFrame) -> list[list[str] | None]:
    """The `history` of each request row (None where absent): a list of item id strings, else an
    MlflowException naming the rows and the fix."""
    if "history" not in frame.columns:
        return [None] * len(frame)
    out, bad = [], []
    for i, h in enumerate(frame["history"]):
        if h is None or (isinstance(h, float) and np.isnan(h)):
            out.append(None)
        elif isinstance(h, (list, tuple, np.ndarray)) and all(isinstance(v, str) and v.strip() for v in h):
            out.append([v.strip() for v in h])
        else:
            out.append(None)
            bad.append(i)
    if bad:
        raise MlflowException.invalid_parameter_value(
            f"history must be a list of item id strings; rows {bad[:5]} are not "
            f"({[_shown(frame['history'].tolist()[i]) for i in bad[:5]]}): send e.g. {HISTORY_EXAMPLE}"
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
        popular = _read(root / "popular").sort_values(["popularity", "item_idx"], ascending=[False, True])
        self.popular = popular[["item_idx", "popularity"]].to_numpy()
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
        """Rows in request order. Known users the model scores go through `score_batch` together,
        the kernel of the Spark top-N (blocks of users per matrix product, seen items masked,
        explanations in batch); users it never saw get the popular list at once; a row with a
        history, or a known user it cannot score, is answered on its own."""
        asked = requests(model_input, self.n)
        wanted = histories(model_input)
        idx = [self.user_row.get(u) for u, _ in asked]
        batched = [
            i
            for i, (h, x) in enumerate(zip(wanted, idx, strict=True))
            if h is None and x is not None and int(x) in self.scoreable
        ]
        unknown = [i for i, (h, x) in enumerate(zip(wanted, idx, strict=True)) if h is None and x is None]
        frames = [self.scored([asked[i] for i in batched], np.array(batched, np.int64))]
        frames.append(self.unknown([asked[i] for i in unknown], np.array(unknown, np.int64)))
        done = set(batched) | set(unknown)
        for i, ((u, n), h) in enumerate(zip(asked, wanted, strict=True)):
            if i not in done:
                frames.append(self.recommend(u, n, h).assign(_pos=i))
        out = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else None
        if out is None:
            return pd.DataFrame(columns=COLUMNS)
        return out.sort_values(["_pos", "rank"], kind="stable").drop(columns="_pos").reset_index(drop=True)

    def scored(self, asked: list[tuple[str, int]], where: np.ndarray) -> pd.DataFrame:
        """The model's top-n of known, scoreable users (request rows `where`), in slices of
        SLICE_ROWS through `score_batch`; `_pos` is each row's request position."""
        if not asked:
            return pd.DataFrame()
        rows = np.array([self.user_row[u] for u, _ in asked], np.int64)
        ns = np.array([n for _, n in asked], np.int64)
        parts = []
        for start in range(0, rows.size, SLICE_ROWS):
            batch = self._user_batch(rows[start : start + SLICE_ROWS], start)
            parts.append(
                score_batch(batch, self.item_idx, self.vt, self.pos, int(ns.max()), self.block, self.explain, self.gram)
            )
        out = pa.Table.from_batches(parts)
        row = out.column("user_idx").to_numpy()
        rank = out.column("rank").to_numpy()
        keep = rank <= ns[row]
        return pd.DataFrame(
            {
                "user_id": np.array([u for u, _ in asked], object)[row[keep]],
                "rank": rank[keep],
                "item_id": self.ids[out.column("item_idx").to_numpy()[keep]],
                "score": out.column("score").to_numpy()[keep],
                "source": EASE if self.ease else ALS,
                "because": (
                    out.column("because").filter(pa.array(keep)).to_pylist()
                    if self.explain is not None
                    else [None] * int(keep.sum())
                ),
                "_pos": where[row[keep]],
            }
        )

    def _user_batch(self, users: np.ndarray, start: int) -> pa.RecordBatch:
        """score_batch's input for model users `users` (user_idx): each row's factors (ALS) or
        binary history over B's catalogue (EASE), its seen items and their fit weights; `user_idx`
        holds the row's position among the request's batched rows (this slice starts at `start`)."""
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
        offsets = pa.array(np.concatenate([[0], np.cumsum(lens)]).astype(np.int32))
        width = x.shape[1]
        return pa.RecordBatch.from_arrays(
            [
                pa.array(np.arange(start, start + m, dtype=np.int32)),
                pa.ListArray.from_arrays(
                    pa.array(np.arange(0, (m + 1) * width, width, dtype=np.int32)), pa.array(x.ravel())
                ),
                pa.ListArray.from_arrays(offsets, pa.array(seen.astype(np.int32))),
                pa.ListArray.from_arrays(offsets, pa.array(weights.astype(np.float64))),
            ],
            names=["user_idx", "features", "seen", "weights"],
        )

    def unknown(self, asked: list[tuple[str, int]], where: np.ndarray) -> pd.DataFrame:
        """Users the model never saw (request rows `where`): the n most popular items of all."""
        if not asked:
            return pd.DataFrame()
        ks = np.minimum(np.array([n for _, n in asked], np.int64), len(self.popular))
        row = np.repeat(np.arange(len(asked)), ks)
        rank = np.arange(int(ks.sum())) - np.repeat(np.cumsum(ks) - ks, ks) + 1
        top = self.popular[rank - 1]
        return pd.DataFrame(
            {
                "user_id": np.array([u for u, _ in asked], object)[row],
                "rank": rank,
                "item_id": self.ids[top[:, 0].astype(np.int64)],
                "score": (top[:, 1] * self.share).astype(np.float32),
                "source": UNKNOWN_USER,
                "because": [None] * rank.size,
                "_pos": where[row],
            }
        )

    def history_pairs(self, history: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(columns of vt, fit ratings) of a request's history: its items in the model's catalogue,
        each entry one event of weight 1, as the model's fit rated a pair (models.fit_rating)."""
        idx = np.array([self.item_row[i] for i in history if i in self.item_row], np.int64)
        idx, counts = np.unique(idx[idx < self.pos.size], return_counts=True)
        ok = self.pos[idx] >= 0
        rating = counts[ok].astype(np.float64)
        return self.pos[idx[ok]], np.log1p(rating / self.epsilon) if self.log_rating else rating

    def recommend(self, user_id: str, n: int, history: list[str] | None = None) -> pd.DataFrame:
        """One user's rows: the model's top-n (ALS or EASE) with reasons, from the request's history
        when one is given, or the popular fallback."""
        idx = self.user_row.get(user_id)
        lo, hi = np.searchsorted(self.seen_users, [idx, idx + 1]) if idx is not None else (0, 0)
        seen = self.seen_items[lo:hi]
        pos = self.pos
        cols = pos[seen[seen < pos.size]]
        if history is not None:
            if not self.solver.implicit or (self.nonnegative and not self.ease):
                raise MlflowException.invalid_parameter_value(
                    "history serves implicit-feedback models fitted without als.nonnegative only (fold-in "
                    "solves the unconstrained normal equations): send user_id alone"
                )
            cols, weights = self.history_pairs(history)
            seen = np.union1d(seen, self.item_idx[cols])
            vector = (
                None
                if self.ease or not (weights > 0).any()
                else fold_in_block(self.vt, self.gram, np.zeros(cols.size, np.int64), cols, weights, 1, self.solver)[0]
            )
            row = 0 if (self.ease and cols.size) or vector is not None else None
        elif self.ease:  # a history in the catalogue is all EASE needs
            row = 0 if (cols >= 0).any() else None
        else:
            row = self.factor_row.get(int(idx)) if idx is not None else None
        if row is None:  # unknown, or known but not scoreable: the most popular unseen items
            keep = ~np.isin(self.popular[:, 0].astype(np.int64), seen)
            top = self.popular[keep][:n]
            return pd.DataFrame(
                {
                    "user_id": user_id,
                    "rank": np.arange(1, len(top) + 1),
                    "item_id": self.ids[top[:, 0].astype(np.int64)],
                    "score": (top[:, 1] * self.share).astype(np.float32),
                    "source": POPULAR if idx is not None else UNKNOWN_USER,
                    "because": [None] * len(top),
                }
            )
        if history is None:  # the model's own history of the user
            weights = None
            if self.ease:
                weights = np.ones(cols.size)
            elif self.seen_weights is not None:
                weights = self.seen_weights[lo:hi][seen < pos.size]
            weights, cols = weights[cols >= 0] if weights is not None else None, cols[cols >= 0]
            vector = None if self.ease else self.u[row]
        elif self.ease:
            weights = np.ones(cols.size)
        scores = self.vt[cols].sum(axis=0)[None, :] if self.ease else vector.astype(np.float32)[None, :] @ self.vt
        masked = pos[seen[seen < pos.size]]
        scores[0, masked[masked >= 0]] = -np.inf
        part, top = top_k_rows(scores, self.item_idx, min(n, self.item_idx.size))
        keep = np.isfinite(top).ravel()
        because = [None] * int(keep.sum())
        if self.explain is not None:
            owners = np.zeros(cols.size, np.int64)
            because = because_column(
                self.explain, self.vt, self.gram, self.item_idx, owners, cols, weights, part, keep
            ).to_pylist()
        return pd.DataFrame(
            {
                "user_id": user_id,
                "rank": np.arange(1, keep.sum() + 1),
                "item_id": self.ids[self.item_idx[part[0][keep]]],
                "score": top[0][keep].astype(np.float32),
                "source": (EASE if self.ease else ALS)
                if history is None
                else (EASE_FOLD_IN if self.ease else ALS_FOLD_IN),
                "because": because,
            }
        )
