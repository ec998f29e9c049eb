"""Run pictures as PNG bytes (matplotlib, Agg): a cohort heatmap, retention curves, stickiness over
time, and ALS vs baseline by history length.

Inputs are small tables: cohorts x periods, days, history buckets (they grow with time, not with
users or events).
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


def colour_scale(m: pd.DataFrame) -> tuple[np.ndarray, float]:
    """The heatmap's coloured cells and the top of its scale: period 0 is 100% by definition, so it
    is left uncoloured (NaN: grey, still labelled) and the scale ends at the highest later cell."""
    coloured = m.to_numpy(dtype=float).copy()
    coloured[:, [j for j, c in enumerate(m.columns) if c == 0]] = np.nan
    top = float(np.nanmax(coloured)) if not np.isnan(coloured).all() else 0.0
    return coloured, max(top, 0.01)


def heatmap_png(table: pd.DataFrame, granularity: str, kind: str = "bounded") -> bytes:
    m = retention_matrix(table, kind)
    sizes = table[table["kind"] == kind].groupby("cohort")["cohort_size"].first().reindex(m.index)
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * m.shape[1] + 3), max(3, 0.4 * m.shape[0] + 1.5)))
    coloured, top = colour_scale(m)
    cmap = matplotlib.colormaps["viridis"].copy()
    cmap.set_bad("#d9d9d9")
    im = ax.imshow(np.ma.masked_invalid(coloured), cmap=cmap, vmin=0, vmax=top, aspect="auto")
    partial = retention_matrix(table, kind, "complete").reindex_like(m).eq(False).to_numpy()
    for i, j in zip(*np.nonzero(partial), strict=True):
        ax.add_patch(
            plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor=(1, 1, 1, 0.45), linewidth=0)
        )
    labelled = m.size <= MAX_LABELLED_CELLS
    if labelled:
        for (i, j), v in np.ndenumerate(m.to_numpy(dtype=float)):
            if not np.isnan(v):
                ax.text(
                    j,
                    i,
                    f"{v:.0%}" + ("*" if partial[i, j] else ""),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if m.columns[j] == 0 or v >= 0.6 * top else "white",
                )
    ax.set_xticks(range(m.shape[1]), [str(c) for c in m.columns])
    ax.set_yticks(range(m.shape[0]), [f"{c} (n={n:,})" for c, n in zip(m.index, sizes, strict=True)])
    ax.set_xlabel(f"{granularity}s since first activity")
    ax.set_ylabel("cohort")
    notes = ["hatched*: period only partly observed (the data ends inside it)"] if partial.any() else []
    if not labelled:
        notes.append(f"values not printed: {m.size:,} cells (over {MAX_LABELLED_CELLS}); see retention_matrix.csv")
    ax.set_title("\n".join([f"{kind} {granularity}ly retention by cohort", *notes]), fontsize=10)
    fig.colorbar(im, ax=ax, label="retention (periods 1+; period 0 is 100%)")
    return _png(fig)


# The size-weighted mean curve stops at the first period observed for fewer than this share of the
# users of period 0: past it one or two young cohorts remain and the mean follows them, not the users.
CURVE_MIN_SHARE = 0.2


def weighted_curve(table: pd.DataFrame, kind: str = "bounded") -> pd.Series:
    """The size-weighted mean retention per period over complete cells, cut where fewer than
    CURVE_MIN_SHARE of period 0's users are still observed."""
    t = table[table["complete"] & (table["kind"] == kind)]
    weighted = t.assign(w=t["retention"] * t["cohort_size"]).groupby("period")[["w", "cohort_size"]].sum()
    observed = weighted["cohort_size"] / weighted["cohort_size"].iloc[0] if len(weighted) else weighted["cohort_size"]
    short = observed.index[observed < CURVE_MIN_SHARE]
    kept = weighted[weighted.index < short.min()] if len(short) else weighted
    return kept["w"] / kept["cohort_size"]


def curves_png(table: pd.DataFrame, granularity: str, kind: str = "bounded") -> bytes:
    complete = table[table["complete"]]
    m = retention_matrix(complete, kind)
    fig, ax = plt.subplots(figsize=(8, 5))
    for _, row in m.iterrows():
        ax.plot(row.index, row.to_numpy(dtype=float), color="tab:blue", alpha=0.25, linewidth=1)
    mean = weighted_curve(table, kind)
    ax.plot(mean.index, mean.to_numpy(), color="black", linewidth=2.5, label="size-weighted mean")
    ax.set_xlabel(f"{granularity}s since first activity")
    ax.set_ylabel("retention")
    ax.set_ylim(0, 1.02)
    ax.set_title(
        f"{kind} {granularity}ly retention: one line per cohort (complete periods only);\n"
        f"the mean stops where under {CURVE_MIN_SHARE:.0%} of the users are still observed",
        fontsize=10,
    )
    ax.legend()
    return _png(fig)


def stickiness_png(stick: pd.DataFrame) -> bytes:
    """DAU/MAU per day (one row per calendar day of the data), with DAU and MAU on a second axis."""
    dates = pd.to_datetime(stick["date"])
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(dates, stick["dau_mau"], color="black", linewidth=2, label="DAU/MAU")
    ax.set_ylabel("DAU/MAU")
    ax.set_ylim(0, max(0.05, float(stick["dau_mau"].max(skipna=True) or 0) * 1.15))
    users = ax.twinx()
    users.plot(dates, stick["dau"], color="tab:blue", alpha=0.5, linewidth=1, label="DAU")
    users.plot(dates, stick["mau"], color="tab:orange", alpha=0.5, linewidth=1, label="MAU")
    users.set_ylabel("active users")
    fig.legend(loc="upper left", bbox_to_anchor=(0.08, 0.92), fontsize=8)
    ax.set_title("stickiness over time (MAU: the trailing 30 days)")
    fig.autofmt_xdate()
    return _png(fig)


def by_history_png(by_history: pd.DataFrame, metric: str) -> bytes:
    """ALS against the popularity baseline on `metric`, one pair of bars per training-history bucket
    (rows of the train job's eval/by_history table: history, users, metric, als, baseline)."""
    t = by_history[by_history["metric"] == metric]
    x = np.arange(len(t))
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * len(t) + 2), 4))
    ax.bar(x - 0.2, t["als"], 0.4, label="ALS", color="tab:blue")
    ax.bar(x + 0.2, t["baseline"], 0.4, label="popularity", color="tab:gray")
    ax.set_xticks(x, [f"{h} items\n({n:,} users)" for h, n in zip(t["history"], t["users"], strict=True)])
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by training-history length: ALS vs popularity")
    ax.legend()
    return _png(fig)


# How each effect outcome is shown: its label and the factor to its unit (return: a rate, in points).
EFFECT_UNITS = {
    "return": ("returned (pp)", 100.0),
    "active_days": ("active days", 1.0),
    "purchases": ("purchases", 1.0),
}


def forest_png(estimates: pd.DataFrame) -> bytes:
    """The effect estimates as a forest plot: one panel per outcome, one row per window and cohort
    (`all` first), each with its 95% interval (plain difference in means, and CUPED's beside it),
    and the zero line. `estimates` holds the effect job's rows (outcome, window_days, cohort,
    effect, ci_low, ci_high, effect_cuped, ci_low_cuped, ci_high_cuped, q_value)."""
    outcomes = [o for o in EFFECT_UNITS if o in set(estimates["outcome"])]
    rows = max(len(estimates[estimates["outcome"] == o]) for o in outcomes)
    fig, axes = plt.subplots(1, len(outcomes), figsize=(4.2 * len(outcomes), 1.2 + 0.38 * rows), squeeze=False)
    for ax, name in zip(axes[0], outcomes, strict=True):
        label, k = EFFECT_UNITS[name]
        t = estimates[estimates["outcome"] == name].copy()
        t["_all"] = t["cohort"] != "all"
        t = t.sort_values(["window_days", "_all", "cohort"]).reset_index(drop=True)
        y = np.arange(len(t))[::-1]
        for col, low, high, dy, color, tag in (
            ("effect", "ci_low", "ci_high", 0.12, "black", "difference in means"),
            ("effect_cuped", "ci_low_cuped", "ci_high_cuped", -0.12, "tab:blue", "CUPED"),
        ):
            mid = t[col].to_numpy(float) * k
            err = np.vstack([mid - t[low].to_numpy(float) * k, t[high].to_numpy(float) * k - mid])
            ax.errorbar(mid, y + dy, xerr=err, fmt="o", color=color, markersize=4, capsize=2, label=tag)
        ax.axvline(0, color="gray", linewidth=1, linestyle="--")
        q = t["q_value"] if "q_value" in t else pd.Series([np.nan] * len(t))
        ticks = [
            f"{w}d · {c}" + (f" (q {qv:.2f})" if qv == qv else "")
            for w, c, qv in zip(t["window_days"], t["cohort"], q, strict=True)
        ]
        ax.set_yticks(y, ticks, fontsize=8)
        ax.set_xlabel(f"treatment - control: {label}")
        ax.set_title(name.replace("_", " "))
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle("effect of recommendations by window and cohort (95% intervals; q: Benjamini-Hochberg)")
    return _png(fig)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
