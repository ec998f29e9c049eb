"""The effect of being served recommendations: treatment vs control after a served run.

Unit: user; estimand: the intent-to-treat average effect of the `treatment` arm on an outcome in
a window after the serving date D (events dated D+1 .. D+w): returned (any event), active days,
purchases. Assumptions: arms come from the keyed hash (random with respect to users' behaviour),
users do not affect each other's outcomes, and every assigned user counts in their arm whatever
they were shown (intent to treat).

- Plain: difference in means, Welch standard error, 95% normal interval (large arms).
- CUPED (Deng et al., WSDM'13): Y' = Y - theta (X - mean X), theta = cov(X, Y) / var(X) pooled
  over both arms, X = active days in the `pre_days` days up to D (D - pre_days + 1 .. D: the
  lists count as served from the end of day D, so D is pre-period and no day is in both);
  `variance_ratio` is Var(effect') / Var(effect), the share of the variance left.
- By cohort (first-activity period): the same, with Benjamini-Hochberg q-values across cohorts.
- The minimum detectable effect (two-sided 5%, power 80%) for the arm sizes at hand, and a
  sample-ratio check: chi-square of the arm sizes against the configured fraction.

Spark computes one row of outcomes per user, then sums (n, sum Y, sum Y^2, sum X, sum X^2,
sum XY) per arm and cohort; everything else is arithmetic on those few rows, here, in Python.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys_spark.analytics.arms import CONTROL, TREATMENT

Z95 = 1.959963984540054  # two-sided 5%
Z80 = 0.8416212335729143  # power 80%
OUTCOMES = ("return", "active_days", "purchases")
PRE = "pre_active_days"
ALL = "all"


def outcome(name: str, window: int) -> str:
    return f"{name}_{window}d"


def user_outcomes(
    assignments: DataFrame,
    events: DataFrame,
    served: dt.date,
    windows: list[int],
    pre_days: int,
    purchase_types: list[str],
    granularity: str,
) -> DataFrame:
    """One row per assigned user: arm, cohort (the period of their first event; `none` without
    events), the pre-period covariate and every outcome per window (0 without events)."""
    day = F.datediff(F.col("event_date"), F.lit(served))  # 1 .. w: follow-up; 1 - pre_days .. 0: pre-period
    pre = (day >= 1 - pre_days) & (day <= 0)
    aggs = [
        F.min("event_date").alias("_first"),
        F.count_distinct(F.when(pre, F.col("event_date"))).cast("double").alias(PRE),
    ]
    for w in windows:
        inside = (day >= 1) & (day <= w)
        aggs += [
            F.max(F.when(inside, 1.0).otherwise(0.0)).alias(outcome("return", w)),
            F.count_distinct(F.when(inside, F.col("event_date"))).cast("double").alias(outcome("active_days", w)),
            F.sum(F.when(inside & F.col("event_type").isin(purchase_types), 1.0).otherwise(0.0)).alias(
                outcome("purchases", w)
            ),
        ]
    per_user = events.where(day <= max(windows)).groupBy("user_id").agg(*aggs)
    values = [PRE] + [outcome(o, w) for w in windows for o in OUTCOMES]
    cohort = F.coalesce(F.date_trunc(granularity, F.col("_first")).cast("date").cast("string"), F.lit("none"))
    return (
        assignments.select("user_id", "arm")
        .join(per_user, "user_id", "left")
        .fillna(0.0, subset=values)
        .select("user_id", "arm", cohort.alias("cohort"), *values)
    )


def moments(outcomes: DataFrame, columns: list[str], by_cohort: bool) -> list[dict[str, Any]]:
    """Per arm (and cohort): n and, per outcome Y, the sums of Y, Y^2, X Y with X the covariate,
    plus the sums of X and X^2. A handful of rows."""
    aggs = [F.count(F.lit(1)).alias("n"), F.sum(PRE).alias("sx"), F.sum(F.col(PRE) * F.col(PRE)).alias("sxx")]
    for c in columns:
        y = F.col(c)
        aggs += [F.sum(y).alias(f"sy:{c}"), F.sum(y * y).alias(f"syy:{c}"), F.sum(y * F.col(PRE)).alias(f"sxy:{c}")]
    keys = ["arm", "cohort"] if by_cohort else ["arm"]
    return [r.asDict() for r in outcomes.groupBy(*keys).agg(*aggs).collect()]  # arms x cohorts rows


@dataclass
class Estimate:
    n_treatment: int
    n_control: int
    mean_treatment: float
    mean_control: float
    effect: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float
    effect_cuped: float
    se_cuped: float
    ci_low_cuped: float
    ci_high_cuped: float
    p_value_cuped: float
    theta: float
    variance_ratio: float  # Var(CUPED effect) / Var(plain effect)
    mde: float  # minimum detectable effect of the plain estimate (5% two-sided, power 80%)


def _p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2)) if math.isfinite(z) else float("nan")


def estimate(t: dict[str, float], c: dict[str, float], column: str) -> Estimate | None:
    """The plain and CUPED effect of one outcome from the two arms' sums (None below 2 users an arm)."""
    nt, nc = int(t["n"]), int(c["n"])
    if nt < 2 or nc < 2:
        return None

    def stats(m: dict[str, float]) -> tuple[float, float, float, float, float]:
        n = m["n"]
        my, mx = m[f"sy:{column}"] / n, m["sx"] / n
        vy = max(m[f"syy:{column}"] - n * my * my, 0.0) / (n - 1)
        vx = max(m["sxx"] - n * mx * mx, 0.0) / (n - 1)
        cxy = (m[f"sxy:{column}"] - n * mx * my) / (n - 1)
        return my, mx, vy, vx, cxy

    myt, mxt, vyt, vxt, ct = stats(t)
    myc, mxc, vyc, vxc, cc = stats(c)
    # theta from the pooled sums (both arms as one sample)
    n = t["n"] + c["n"]
    sx, sxx = t["sx"] + c["sx"], t["sxx"] + c["sxx"]
    sy, sxy = t[f"sy:{column}"] + c[f"sy:{column}"], t[f"sxy:{column}"] + c[f"sxy:{column}"]
    mx = sx / n
    var_x = (sxx - n * mx * mx) / (n - 1)
    cov_xy = (sxy - n * mx * (sy / n)) / (n - 1)
    theta = cov_xy / var_x if var_x > 0 else 0.0
    effect = myt - myc
    se = math.sqrt(vyt / nt + vyc / nc)
    adj_t, adj_c = myt - theta * (mxt - mx), myc - theta * (mxc - mx)
    vt2 = max(vyt + theta * theta * vxt - 2 * theta * ct, 0.0)
    vc2 = max(vyc + theta * theta * vxc - 2 * theta * cc, 0.0)
    effect2 = adj_t - adj_c
    se2 = math.sqrt(vt2 / nt + vc2 / nc)
    return Estimate(
        n_treatment=nt,
        n_control=nc,
        mean_treatment=myt,
        mean_control=myc,
        effect=effect,
        se=se,
        ci_low=effect - Z95 * se,
        ci_high=effect + Z95 * se,
        p_value=_p(effect / se) if se > 0 else float("nan"),
        effect_cuped=effect2,
        se_cuped=se2,
        ci_low_cuped=effect2 - Z95 * se2,
        ci_high_cuped=effect2 + Z95 * se2,
        p_value_cuped=_p(effect2 / se2) if se2 > 0 else float("nan"),
        theta=theta,
        variance_ratio=(se2 * se2) / (se * se) if se > 0 else float("nan"),
        mde=(Z95 + Z80) * se,
    )


def benjamini_hochberg(p: list[float]) -> list[float]:
    """q-values for p-values `p` (NaN stays NaN and does not count).

    >>> [round(q, 4) for q in benjamini_hochberg([0.01, 0.04, 0.03, float("nan")])]
    [0.03, 0.04, 0.04, nan]
    """
    ranked = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m, q, best = len(ranked), [float("nan")] * len(p), 1.0
    for rank in range(m, 0, -1):
        v, i = ranked[rank - 1]
        best = min(best, v * m / rank)
        q[i] = best
    return q


def sample_ratio(n_treatment: int, n_control: int, fraction: float) -> tuple[float, float]:
    """(chi-square, p-value) of the arm sizes against the configured control fraction (1 df).

    900 vs 100 at a fraction of 0.1 is exactly as expected; 880 vs 120 is 4.44 on one degree of freedom:

    >>> sample_ratio(900, 100, 0.1)
    (0.0, 1.0)
    >>> [round(v, 4) for v in sample_ratio(880, 120, 0.1)]
    [4.4444, 0.035]
    """
    n = n_treatment + n_control
    expected = (n * (1 - fraction), n * fraction)
    chi2 = sum((o - e) ** 2 / e for o, e in zip((n_treatment, n_control), expected, strict=True) if e > 0)
    return chi2, math.erfc(math.sqrt(chi2 / 2))


def arm_pairs(rows: list[dict[str, Any]], by_cohort: bool) -> dict[str, tuple[dict, dict]]:
    """{cohort (or ALL): (treatment sums, control sums)} where both arms have users."""
    groups: dict[str, dict[str, dict]] = {}
    for r in rows:
        groups.setdefault(r["cohort"] if by_cohort else ALL, {})[r["arm"]] = r
    return {k: (g[TREATMENT], g[CONTROL]) for k, g in sorted(groups.items()) if TREATMENT in g and CONTROL in g}
