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
from recsys_spark.recs.kernels import because_column, explain_for, fold_in_block, indexed, solver_for, top_k_rows

COLUMNS = ["user_id", "rank", "item_id", "score", "source", "because"]


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
        self.item_row = dict(zip(items["item_id"], items["item_idx"], strict=True))
        chosen, als = cfg.get("chosen", {}), cfg["als"]
        self.log_rating = self.solver.implicit and chosen.get("confidence", als["confidence"]) == "log"
        self.epsilon = float(als["epsilon"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        asked = requests(model_input, self.n)
        frames = [self.recommend(u, n, h) for (u, n), h in zip(asked, histories(model_input), strict=True)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)

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
            if not self.solver.implicit:
                raise MlflowException.invalid_parameter_value(
                    "history serves implicit-feedback models only: this model was fitted on ratings "
                    "(interactions.mode explicit); send user_id alone"
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
