"""Retention pictures: a cohort heatmap and retention curves, as PNG bytes (matplotlib, Agg).

Inputs are the small cohort x period matrix (it grows with time, not with users or events).
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def retention_matrix(table: pd.DataFrame, kind: str = "bounded") -> pd.DataFrame:
    """Cohorts as rows, periods as columns, retention as values (NaN where not observable)."""
    t = table[table["kind"] == kind]
    return t.pivot(index="cohort", columns="period", values="retention").sort_index()


def heatmap_png(table: pd.DataFrame, granularity: str, kind: str = "bounded") -> bytes:
    m = retention_matrix(table, kind)
    sizes = table[table["kind"] == kind].groupby("cohort")["cohort_size"].first().reindex(m.index)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * m.shape[1] + 3), max(3, 0.4 * m.shape[0] + 1.5)))
    im = ax.imshow(m.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    if m.size <= 900:  # percentages stay legible up to about 30 x 30 cells
        for (i, j), v in np.ndenumerate(m.to_numpy(dtype=float)):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0%}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "black")
    ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns])
    ax.set_yticks(range(m.shape[0]), [f"{c} (n={n:,})" for c, n in zip(m.index, sizes)])
    ax.set_xlabel(f"{granularity}s since first activity")
    ax.set_ylabel("cohort")
    ax.set_title(f"{kind} {granularity}ly retention by cohort")
    fig.colorbar(im, ax=ax, label="retention")
    return _png(fig)


def curves_png(table: pd.DataFrame, granularity: str, kind: str = "bounded") -> bytes:
    t = table[table["kind"] == kind]
    m = retention_matrix(table, kind)
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, row in m.iterrows():
        ax.plot(row.index, row.to_numpy(dtype=float), color="tab:blue", alpha=0.25, linewidth=1)
    weighted = t.assign(w=t["retention"] * t["cohort_size"]).groupby("period")[["w", "cohort_size"]].sum()
    ax.plot(weighted.index, weighted["w"] / weighted["cohort_size"], color="black", linewidth=2.5, label="size-weighted mean")
    ax.set_xlabel(f"{granularity}s since first activity")
    ax.set_ylabel("retention")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{kind} {granularity}ly retention: one line per cohort")
    ax.legend()
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
