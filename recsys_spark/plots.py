"""Retention pictures: a cohort heatmap and retention curves, as PNG bytes (matplotlib, Agg).

Inputs are the small cohort x period matrix (it grows with time, not with users or events).
Cells of a period the data ends inside (`complete` false) are hatched on the heatmap and left out
of the curves, so a partly observed period does not read as a drop.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


MAX_LABELLED_CELLS = 900  # percentages stay legible up to about 30 x 30 cells


def retention_matrix(table: pd.DataFrame, kind: str = "bounded", value: str = "retention") -> pd.DataFrame:
    """Cohorts as rows, periods as columns, `value` as values (NaN where not observable)."""
    t = table[table["kind"] == kind]
    return t.pivot(index="cohort", columns="period", values=value).sort_index()


def heatmap_png(table: pd.DataFrame, granularity: str, kind: str = "bounded") -> bytes:
    m = retention_matrix(table, kind)
    sizes = table[table["kind"] == kind].groupby("cohort")["cohort_size"].first().reindex(m.index)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * m.shape[1] + 3), max(3, 0.4 * m.shape[0] + 1.5)))
    im = ax.imshow(m.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    partial = retention_matrix(table, kind, "complete").reindex_like(m).eq(False).to_numpy()
    for i, j in zip(*np.nonzero(partial)):
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor=(1, 1, 1, 0.45), linewidth=0))
    labelled = m.size <= MAX_LABELLED_CELLS
    if labelled:
        for (i, j), v in np.ndenumerate(m.to_numpy(dtype=float)):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0%}" + ("*" if partial[i, j] else ""), ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
    ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns])
    ax.set_yticks(range(m.shape[0]), [f"{c} (n={n:,})" for c, n in zip(m.index, sizes)])
    ax.set_xlabel(f"{granularity}s since first activity")
    ax.set_ylabel("cohort")
    notes = ["hatched*: period only partly observed (the data ends inside it)"] if partial.any() else []
    if not labelled:
        notes.append(f"values not printed: {m.size:,} cells (over {MAX_LABELLED_CELLS}); see retention_matrix.csv")
    ax.set_title("\n".join([f"{kind} {granularity}ly retention by cohort", *notes]), fontsize=10)
    fig.colorbar(im, ax=ax, label="retention")
    return _png(fig)


def curves_png(table: pd.DataFrame, granularity: str, kind: str = "bounded") -> bytes:
    complete = table[table["complete"]]
    t = complete[complete["kind"] == kind]
    m = retention_matrix(complete, kind)
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, row in m.iterrows():
        ax.plot(row.index, row.to_numpy(dtype=float), color="tab:blue", alpha=0.25, linewidth=1)
    weighted = t.assign(w=t["retention"] * t["cohort_size"]).groupby("period")[["w", "cohort_size"]].sum()
    ax.plot(weighted.index, weighted["w"] / weighted["cohort_size"], color="black", linewidth=2.5, label="size-weighted mean")
    ax.set_xlabel(f"{granularity}s since first activity")
    ax.set_ylabel("retention")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{kind} {granularity}ly retention: one line per cohort (complete periods only)")
    ax.legend()
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
