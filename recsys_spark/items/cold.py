"""Factors for items ALS has not learned yet, from their text embeddings.

ALS gives an item factors only after users interact with it. An item's text embedding (see
`items.texts`) places it among similar items, and two maps learned on warm items (those ALS knows)
turn an embedding into an ALS item factor:

- `ridge`: a linear map embedding -> factor, [X 1] W = Y by ridge regression (the bias is not
  penalised), fitted on every warm item.
- `knn`: the mean factor of the k warm items nearest by cosine similarity of the embeddings.

Both work on the driver with numpy: their inputs grow with the catalogue (items x dimension), as
the item factors top-N broadcasts do, never with users or events.
"""

from __future__ import annotations

import numpy as np

from recsys_spark.recs.kernels import top_k_rows

METHODS = ("ridge", "knn")


def ridge_map(x: np.ndarray, y: np.ndarray, reg: float) -> np.ndarray:
    """W ((d + 1) x r) minimising |[x 1] W - y|^2 + reg |W without its bias row|^2."""
    xb = np.hstack([x, np.ones((len(x), 1), x.dtype)]).astype(np.float64)
    penalty = np.eye(xb.shape[1]) * reg
    penalty[-1, -1] = 0.0
    return np.linalg.solve(xb.T @ xb + penalty, xb.T @ y.astype(np.float64))


def ridge_factors(x_warm: np.ndarray, y_warm: np.ndarray, x_new: np.ndarray, reg: float) -> np.ndarray:
    """Factors of the new items: their embeddings through the ridge map fitted on the warm items."""
    w = ridge_map(x_warm, y_warm, reg)
    return (np.hstack([x_new, np.ones((len(x_new), 1), x_new.dtype)]) @ w).astype(np.float32)


def unit_rows(a: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (an all-zero row stays zero): dot products become cosines."""
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)


def knn_factors(x_warm: np.ndarray, y_warm: np.ndarray, x_new: np.ndarray, k: int) -> np.ndarray:
    """Factors of the new items: the mean factor of their k nearest warm items by cosine similarity
    (ties by warm item position, as top-N breaks them). A new item with an all-zero embedding (no
    text) has no nearest items: it gets the mean of all warm factors, the uninformed guess."""
    kk = min(k, len(x_warm))
    sims = unit_rows(x_new.astype(np.float32)) @ unit_rows(x_warm.astype(np.float32)).T
    near, _ = top_k_rows(sims, np.arange(len(x_warm)), kk)
    out = y_warm[near].mean(axis=1)
    blank = ~np.any(x_new, axis=1)
    out[blank] = y_warm.mean(axis=0)
    return out.astype(np.float32)


def cold_factors(
    method: str, x_warm: np.ndarray, y_warm: np.ndarray, x_new: np.ndarray, reg: float = 1.0, k: int = 20
) -> np.ndarray:
    """Factors of the new items by `method` (`ridge` or `knn`)."""
    if method == "ridge":
        return ridge_factors(x_warm, y_warm, x_new, reg)
    if method == "knn":
        return knn_factors(x_warm, y_warm, x_new, k)
    raise ValueError(f"cold-item method {method!r} is unknown: use one of {', '.join(METHODS)}")
