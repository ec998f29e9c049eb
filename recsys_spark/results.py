"""Typed stage results: what each job returns, and the one source of the CLI summary, the MLflow
metrics and `--summary-json`.

Each result knows its stage name, the metrics it logs under the stable names runs are compared
by, and its lines of the printed summary. `RunResult` holds the stages a command ran, in order.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


def _short(v: Any) -> str:
    """A parameter as a person reads it: floats to 4 significant digits (0.047, 3, 1.234e-05)."""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


@dataclass(kw_only=True)
class StageResult:
    stage: ClassVar[str] = ""
    seconds: float = 0.0  # set by the runner when the stage ends
    paths: dict[str, str] = field(default_factory=dict)  # tables written: name -> path

    def metrics(self) -> dict[str, float]:
        """Numbers to log to MLflow, under stable names."""
        return {}

    def lines(self) -> list[str]:
        """This stage's lines of the printed summary."""
        return []


@dataclass(kw_only=True)
class GenerateResult(StageResult):
    stage: ClassVar[str] = "generate"
    generated: bool = False  # False when existing input was reused
    path: str = ""  # where the raw events are
    rows: int | None = None  # rows written (None when nothing was generated)

    def lines(self) -> list[str]:
        return [f"generated {self.rows:,} raw events: {self.path}"] if self.generated else []


@dataclass(kw_only=True)
class IngestResult(StageResult):
    stage: ClassVar[str] = "ingest"
    rows_read: int
    rows_clean: int
    rows_quarantined: int
    quarantined_by_reason: dict[str, int]  # reason -> rows, sorted by reason
    rows_erased: int = 0  # rows of users on the erasure list, left out of both tables

    def metrics(self) -> dict[str, float]:
        return {
            "rows_read": self.rows_read,
            "rows_clean": self.rows_clean,
            "rows_quarantined": self.rows_quarantined,
            "rows_erased": self.rows_erased,
            **{f"quarantined_{r}": n for r, n in self.quarantined_by_reason.items()},
        }

    def lines(self) -> list[str]:
        erased = f"  erased {self.rows_erased:,}" if self.rows_erased else ""
        out = [
            f"rows read {self.rows_read:,}  clean {self.rows_clean:,}  quarantined {self.rows_quarantined:,}{erased}"
        ]
        out += [f"  quarantined {r}: {n:,}" for r, n in self.quarantined_by_reason.items()]
        return out


@dataclass
class SplitInfo:
    """Where the evaluation split fell: temporal (cutoff, test end, follow-up end) or random (fraction)."""

    method: str
    cutoff: dt.datetime | None = None
    test_end: dt.datetime | None = None
    followup_end: dt.datetime | None = None
    test_fraction: float | None = None

    def describe(self) -> str:
        if self.method == "temporal":
            return f"train before {self.cutoff:%Y-%m-%d}, test to {self.test_end:%Y-%m-%d}"
        return f"random {self.test_fraction} of each user's items held out"


@dataclass(kw_only=True)
class StreamResult(StageResult):
    """What `stream` did over its micro-batches (each batch's figures are MLflow metrics by step)."""

    stage: ClassVar[str] = "stream"
    batches: int = 0  # batches committed by this run
    replayed: int = 0  # batches Spark replayed that were already committed: skipped
    rows_read: int = 0
    rows_clean: int = 0
    rows_quarantined: int = 0
    rows_erased: int = 0
    users_refreshed: int = 0  # users whose lists a batch rewrote (recommend --fold-in)
    max_latency_seconds: float = 0.0  # a file landing -> its users' lists written, the slowest batch

    def add(self, read: int, clean: int, bad: int, erased: int, refreshed: int, latency: float) -> None:
        self.batches += 1
        self.rows_read += read
        self.rows_clean += clean
        self.rows_quarantined += bad
        self.rows_erased += erased
        self.users_refreshed += refreshed
        self.max_latency_seconds = max(self.max_latency_seconds, latency)

    def metrics(self) -> dict[str, float]:
        return {
            "stream_batches": self.batches,
            "stream_batches_replayed": self.replayed,
            "rows_read": self.rows_read,
            "rows_clean": self.rows_clean,
            "rows_quarantined": self.rows_quarantined,
            "rows_erased": self.rows_erased,
            "users_refreshed": self.users_refreshed,
            "max_latency_seconds": self.max_latency_seconds,
        }

    def lines(self) -> list[str]:
        replayed = f" ({self.replayed} replayed batches skipped)" if self.replayed else ""
        return [
            f"stream: {self.batches} batches{replayed}: rows read {self.rows_read:,}  clean {self.rows_clean:,}  "
            f"quarantined {self.rows_quarantined:,}; {self.users_refreshed:,} users' lists refreshed, "
            f"slowest batch {self.max_latency_seconds:.1f} s from its first file landing"
        ]


@dataclass(kw_only=True)
class TrainSkipped(StageResult):
    """train with train.if_changed when the saved model was fitted on exactly these events."""

    stage: ClassVar[str] = "train"
    model: str  # the model kept
    events: int
    data_until: str

    def metrics(self) -> dict[str, float]:
        return {"train_skipped": 1.0}

    def lines(self) -> list[str]:
        return [
            f"train skipped (train.if_changed): the model at {self.model} was fitted on these {self.events:,} "
            f"events (newest {self.data_until}); no event arrived since"
        ]


@dataclass(kw_only=True)
class TrainResult(StageResult):
    stage: ClassVar[str] = "train"
    interactions: int
    users: int
    items: int
    split: SplitInfo
    chosen_params: dict[str, Any]
    quality: dict[str, float]  # ALS metrics@k, the same with `baseline_`, and users_evaluated
    tuning: list[dict[str, Any]]  # one row per tuning trial
    steps: dict[str, float]  # seconds per train step, in the order they ran
    by_history: list[dict[str, Any]] = field(default_factory=list)  # quality per history cohort (evaluation.by_history)
    events_below_min_value: int | None = None  # events interactions.min_value left out (None: no threshold)
    registry: str = ""  # what happened in the MLflow Model Registry (registry.register_model)
    ease: dict[str, float] = field(default_factory=dict)  # EASE's ease_<metric>_at_k on the same split (and setting)
    ease_validation: dict[str, float] = field(default_factory=dict)  # setting's label -> validation tune.metric@k
    family: str = "als"  # the model family that serves (model.family)
    validation: dict[str, float] = field(default_factory=dict)  # validation_<family>_<metric>_at_k
    ruled: dict[str, float] = field(default_factory=dict)  # rules_<metric> (ALS), ease_rules_<metric>: under the rules

    @property
    def tuning_cost(self) -> float | None:
        """Tuning seconds / seconds of the one final fit (None when tuning was off)."""
        tune, fit = self.steps.get("tune"), self.steps.get("als_fit")
        return round(tune / fit, 2) if tune is not None and fit else None

    def metrics(self) -> dict[str, float]:
        cohorts = {
            f"{m}_history_{row['history'].replace('-', '_').replace('+', '_plus')}": v
            for row in self.by_history
            for m, v in row.items()
            if m != "history"
        }
        cost = {"tuning_cost_x_fit": self.tuning_cost} if self.tuning_cost is not None else {}
        return {
            "interactions": self.interactions,
            "users": self.users,
            "items": self.items,
            **self.quality,
            **self.ruled,
            **self.ease,
            **self.validation,
            **cohorts,
            **cost,
            **{f"seconds_{s}": v for s, v in self.steps.items()},
        }

    def lines(self) -> list[str]:
        q = self.quality
        out = (
            [f"interactions.min_value left out {self.events_below_min_value:,} events"]
            if self.events_below_min_value is not None
            else []
        )
        out += [
            f"ALS vs popularity baseline on {q.get('users_evaluated', 0):,} test users ({self.split.describe()}):",
            f"  {'metric':<18}{'ALS':>8}{'baseline':>10}",
        ]
        out += [
            f"  {m:<18}{q[m]:>8.4f}{q['baseline_' + m]:>10.4f}"
            for m in q
            if not m.startswith("baseline_") and m != "users_evaluated"
        ]
        ndcg = next((m for m in q if m.startswith("ndcg_at_")), None)
        if ndcg and self.by_history:
            out.append(
                f"  {ndcg} by training history: "
                + "; ".join(
                    f"{r['history']} items ({r['users']:,} users) {r[ndcg]:.4f} "
                    f"vs {r.get('baseline_' + ndcg, float('nan')):.4f}"
                    for r in self.by_history
                )
            )
        for family, prefix, unruled in (("ALS", "", q), ("EASE", "ease_", self.ease)):
            shown = [
                m
                for m in q
                if m.startswith(("ndcg_at_", "diversity_at_", "catalog_coverage"))
                and f"{prefix}rules_{m}" in self.ruled
                and f"{prefix}{m}" in unruled
            ]
            if shown:
                out.append(
                    f"  under recommend's item rules ({family}, same users): "
                    + ", ".join(
                        f"{m} {self.ruled[f'{prefix}rules_{m}']:.4f} (without {unruled[prefix + m]:.4f})" for m in shown
                    )
                )
        out.append(
            "  chosen params: " + ", ".join(f"{k} {_short(v)}" for k, v in self.chosen_params.items() if v is not None)
        )
        if self.ease:
            lam, dropout = self.ease["ease_lambda"], self.ease.get("ease_dropout", 0.0)
            out.append(
                f"  EASE (λ {lam:g}{f', dropout {dropout:g}' if dropout else ''}, chosen on validation: "
                + ", ".join(f"{k} {v:.4f}" for k, v in self.ease_validation.items())
                + f") on the same {int(self.ease['ease_users_evaluated']):,} test users: "
                + ", ".join(
                    f"{m.removeprefix('ease_')} {v:.4f}"
                    for m, v in self.ease.items()
                    if m.startswith(("ease_ndcg", "ease_precision", "ease_recall"))
                )
                + (" (serves)" if self.family == "ease" else " (not served: ALS serves)")
            )
        if len(self.validation) > 1:
            out.append(
                f"  serves: {self.family.upper()} (validation "
                + ", ".join(f"{m.removeprefix('validation_')} {v:.4f}" for m, v in self.validation.items())
                + ")"
            )
        if self.registry:
            out.append(f"  model: {self.registry}")
        if self.tuning_cost is not None:
            done = sum(r.get("state") == "complete" for r in self.tuning)
            out.append(
                f"  tuning: {len(self.tuning)} trials ({done} complete, {len(self.tuning) - done} pruned), "
                f"{self.steps['tune']:.1f} s = {self.tuning_cost:.1f}x the final fit ({self.steps['als_fit']:.1f} s)"
            )
        return out


@dataclass(kw_only=True)
class RecommendResult(StageResult):
    stage: ClassVar[str] = "recommend"
    run_id: str
    rows_by_source: dict[str, int]  # als / popular -> rows written
    users_by_arm: dict[str, int] = field(default_factory=dict)  # treatment / control -> users served
    holdout_fraction: float = 0.0
    run_date: dt.date | None = None  # the serving date
    drift: dict[str, float] | None = None  # against the previous serving date's lists (analytics/drift.py)
    drift_since: dt.date | None = None  # that date
    drift_flagged: bool = False  # a PSI above drift.max_psi
    model_id: str = ""  # the model that served (the table's model_id)
    drift_model_before: str | None = None  # the model that served the lists compared with

    def metrics(self) -> dict[str, float]:
        return {
            **{f"recommendations_{src}": n for src, n in self.rows_by_source.items()},
            **{f"users_{arm}": n for arm, n in self.users_by_arm.items()},
            "holdout_fraction": self.holdout_fraction,
            **{f"drift_{k}": v for k, v in (self.drift or {}).items()},
            **({"drift_flagged": float(self.drift_flagged)} if self.drift else {}),
        }

    def lines(self) -> list[str]:
        out = [
            "recommendations: " + ", ".join(f"{n:,} rows from {src}" for src, n in sorted(self.rows_by_source.items()))
        ]
        if self.holdout_fraction > 0:
            t, c = self.users_by_arm.get("treatment", 0), self.users_by_arm.get("control", 0)
            out.append(
                f"arms (served {self.run_date}): {t:,} treatment, {c:,} control "
                f"(holdout fraction {self.holdout_fraction}); `recsys-spark effect` measures the difference"
            )
        if self.drift:
            d, was = self.drift, self.drift_model_before
            model = (
                ""
                if not was
                else f"; model {self.model_id}" + (" (the same)" if was == self.model_id else f" (was {was})")
            )
            out.append(
                f"drift since {self.drift_since}: {d['users_changed']:.0%} of {int(d['users_compared']):,} users got "
                f"a changed list; PSI {d['psi_items']:.3f} (items) / {d['psi_scores']:.3f} (scores); coverage "
                f"{d['coverage']:.1%} ({d['coverage_change']:+.1%}); {int(d['items_new'])} items new, "
                f"{int(d['items_vanished'])} vanished{model}"
                + ("; FLAGGED: a PSI is above drift.max_psi" if self.drift_flagged else "")
            )
        return out


@dataclass(kw_only=True)
class ForgetResult(StageResult):
    stage: ClassVar[str] = "forget"
    users: int  # distinct users asked for
    rows_removed: dict[str, int]  # table -> rows removed (tables that do not exist are left out)
    listed: int  # users on the erasure list now
    versions_removed: int = 0  # kept earlier versions of the user tables (they held the rows too)
    unmatchable_lines: int = 0  # malformed quarantine lines kept as keyed hashes (pseudonymized): no id matches them
    model_users_removed: int = 0  # users whose ids, factors and seen pairs left the saved model
    model_run: str | None = None  # the MLflow run of the current model, when it was trained on them
    model_run_tagged: bool = False  # whether that run was tagged (not with tracking off)
    mlflow_replaced: list[str] = field(default_factory=list)  # what was replaced or deleted in MLflow, a line each

    def metrics(self) -> dict[str, float]:
        return {
            "users_forgotten": self.users,
            "erasure_list_users": self.listed,
            **{f"rows_removed_{t.replace('/', '_')}": n for t, n in self.rows_removed.items()},
        }

    def lines(self) -> list[str]:
        out = [
            f"forgot {self.users:,} users; the erasure list now holds {self.listed:,} "
            "(every later ingest leaves them out)"
        ]
        out += [f"  {table}: removed {n:,} rows" for table, n in self.rows_removed.items()]
        if self.unmatchable_lines:
            out.append(
                f"  quarantine: {self.unmatchable_lines:,} malformed lines are kept only as keyed hashes of their "
                "text (pseudonymized root): no id can be matched in them, and none is readable"
            )
        if self.versions_removed:
            out.append(f"  kept earlier table versions: {self.versions_removed:,} removed (they held the rows too)")
        if self.model_users_removed:
            out.append(f"  model: {self.model_users_removed:,} users' ids, factors and seen pairs removed")
        if self.model_run and self.model_run_tagged:
            out.append(
                f"  the model's MLflow run {self.model_run} tagged trained_on_erased_data=true, "
                "with its registered versions"
            )
            out += [f"  {line}" for line in self.mlflow_replaced]
        elif self.model_run:
            out.append(
                f"  the model's MLflow run {self.model_run} was NOT tagged trained_on_erased_data "
                "(tracking is off, or the run is in another store): its logged artifacts still hold them"
            )
        return out


@dataclass(kw_only=True)
class ItemsResult(StageResult):
    stage: ClassVar[str] = "items"
    texts: int = 0  # items with text (0: text.path not set, stage skipped)
    catalogue_without_text: int = 0  # items the model knows that have no text
    encoder: str = ""  # the embeddings' model name
    encoded: int = 0  # items encoded this run (the rest were reused)
    encode_seconds: float = 0.0
    new_items: int = 0  # items counted as new (young, few users, or no events), with text
    method: str = ""  # the chosen map: text_ridge or text_knn, and its parameter
    validation: dict[str, float] = field(default_factory=dict)  # candidate -> validation NDCG@k
    rows_new_items: int = 0
    rows_similar: int = 0
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step

    def metrics(self) -> dict[str, float]:
        if not self.texts:
            return {}
        out = {
            "items_with_text": self.texts,
            "items_without_text": self.catalogue_without_text,
            "new_items": self.new_items,
            "items_encoded": self.encoded,
            "new_items_rows": self.rows_new_items,
            "similar_items_rows": self.rows_similar,
        }
        if self.encoded and self.encode_seconds:
            out["encode_items_per_s"] = self.encoded / self.encode_seconds
        return out | {
            f"new_items_validation_{k.replace('(', '_').replace('=', '_').replace(')', '')}": v
            for k, v in self.validation.items()
        }

    def lines(self) -> list[str]:
        if not self.texts:
            return []
        rate = f", {self.encoded / self.encode_seconds:,.0f} items/s" if self.encoded and self.encode_seconds else ""
        return [
            f"item texts: {self.texts:,} items ({self.catalogue_without_text:,} of the model's items have none); "
            f"{self.encoder}: {self.encoded:,} encoded{rate}, {self.texts - self.encoded:,} reused",
            f"new items: {self.new_items:,} with text, placed by {self.method} (validation NDCG: "
            + ", ".join(f"{k} {v:.3f}" for k, v in self.validation.items())
            + ")",
            f"new_items: {self.rows_new_items:,} rows; similar_items: {self.rows_similar:,} rows",
        ]


@dataclass(kw_only=True)
class NewItemsEvalResult(StageResult):
    stage: ClassVar[str] = "evaluate-new-items"
    k: int
    encoder: str
    metrics_by_method: dict[str, dict[str, float]]  # method -> metric -> value
    chosen: str  # e.g. knn(k=20), chosen on pretend-new warm items
    items_held_out: int
    items_without_text: int
    users_evaluated: int

    def metrics(self) -> dict[str, float]:
        return {
            f"new_items_{m}_{name}": v
            for m, row in self.metrics_by_method.items()
            for name, v in row.items()
            if name != "users_evaluated"
        } | {
            "new_items_held_out": self.items_held_out,
            "new_items_without_text": self.items_without_text,
            "new_items_users_evaluated": self.users_evaluated,
        }

    def lines(self) -> list[str]:
        k = self.k
        out = [
            f"new items: {self.items_held_out:,} items held out whole ({self.items_without_text:,} without text), "
            f"{self.users_evaluated:,} users ranked them; {self.encoder}; map chosen on validation: {self.chosen}",
            f"  {'method':<22}{'ndcg@' + str(k):>10}{'precision@' + str(k):>14}"
            f"{'recall@' + str(k):>11}{'x random':>10}",
        ]
        rnd = self.metrics_by_method["random"][f"ndcg_at_{k}"] or float("nan")
        for m, row in self.metrics_by_method.items():
            out.append(
                f"  {m:<22}{row[f'ndcg_at_{k}']:>10.4f}{row[f'precision_at_{k}']:>14.4f}{row[f'recall_at_{k}']:>11.4f}"
                f"{row[f'ndcg_at_{k}'] / rnd:>9.1f}x"
            )
        return out


@dataclass
class CohortHeadline:
    cohort: str
    size: int
    period_1: float | None
    period_4: float | None
    partial_periods: list[int] = field(default_factory=list)  # of 1 and 4, those the data ends inside


@dataclass(kw_only=True)
class RetentionResult(StageResult):
    stage: ClassVar[str] = "retention"
    granularity: str
    headline: list[CohortHeadline]  # the three largest cohorts
    dau_mau_last_30_days: float
    retention_period1_weighted: float | None
    retention_period4_weighted: float | None
    quality_by_cohort: list[dict[str, Any]] = field(default_factory=list)  # empty without an evaluation

    def metrics(self) -> dict[str, float]:
        out = {
            "dau_mau_last_30_days": self.dau_mau_last_30_days,
            "retention_period1_weighted": self.retention_period1_weighted,
            "retention_period4_weighted": self.retention_period4_weighted,
        }
        new = self.new_item_link() or {}
        out |= {
            "users_with_new_item": new.get("users"),
            "retained_with_new_item": new.get("with"),
            "retained_without_new_item": new.get("without"),
        }
        return {k: v for k, v in out.items() if v is not None}

    def lines(self) -> list[str]:
        g = self.granularity
        out = [f"retention of the three largest cohorts ({g} 1 / {g} 4, bounded):"]

        def mark(c, p, v):
            return _pct(v) + ("*" if p in c.partial_periods else "")

        out += [
            f"  cohort {c.cohort} ({c.size:,} users): {mark(c, 1, c.period_1)} / {mark(c, 4, c.period_4)}"
            for c in self.headline
        ]
        if any(c.partial_periods for c in self.headline):
            out.append(f"  * {g} only partly observed: the data ends inside it")
        out.append(f"DAU/MAU, mean over the last 30 days: {self.dau_mau_last_30_days:.3f}")
        latest = self.quality_by_cohort[-3:]
        if latest:
            out.append(
                "recommendation quality of the three latest cohorts with test users "
                "(came back after the test: an association, not an effect; active users get more hits):"
            )
        out += [
            f"  cohort {q['cohort']}: {q['users_evaluated']} evaluated, NDCG {q['mean_ndcg']:.3f}, "
            f"hit rate {q['hit_rate']:.2f}; came back after the test "
            f"{_pct(q['retained_with_hit'])} with a hit vs {_pct(q['retained_without_hit'])} without"
            for q in latest
        ]
        if latest and all(q["retained_with_hit"] is None and q["retained_without_hit"] is None for q in latest):
            out.append("  (n/a: these data have no follow-up window after the test, so coming back is not observable)")
        new = self.new_item_link()
        if new:
            out.append(
                f"  lists holding a new item (one few users had used yet, new_items.min_users): {new['users']:,} "
                f"of {new['evaluated']:,} evaluated users; came back after the test: {_pct(new['with'])} "
                f"vs {_pct(new['without'])} without"
            )
        return out

    def new_item_link(self) -> dict[str, Any] | None:
        """Over all cohorts: users whose evaluated list held a new item, and the follow-up return
        rate with vs without one (None when the per-user table has no new_in_list)."""
        rows = [q for q in self.quality_by_cohort if q.get("users_with_new_item") is not None]
        if not rows:
            return None

        def rate(key: str, users: Callable[[dict], int]) -> float | None:
            known = [(q[key], users(q)) for q in rows if q[key] is not None and users(q)]
            total = sum(n for _, n in known)
            return sum(r * n for r, n in known) / total if total else None

        return {
            "users": sum(q["users_with_new_item"] for q in rows),
            "evaluated": sum(q["users_evaluated"] for q in rows),
            "with": rate("retained_with_new_item", lambda q: q["users_with_new_item"]),
            "without": rate("retained_without_new_item", lambda q: q["users_evaluated"] - q["users_with_new_item"]),
        }


@dataclass
class RunResult:
    """The stages one command ran, in order (one for a single job, all of them for `run`)."""

    stages: dict[str, StageResult] = field(default_factory=dict)
    linear_algebra: str = ""  # what the JVM loaded for BLAS/LAPACK (blas.describe)
    report: str = ""  # where the run's HTML report went (pipeline runs with tracking on)

    def get(self, cls: type[StageResult]) -> Any:
        """The stage result of type `cls` (e.g. `TrainResult`), or None when that stage did not run."""
        r = self.stages.get(cls.stage)
        return r if isinstance(r, cls) else None

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, r in self.stages.items():
            out |= r.metrics()
            out[f"seconds_{name}"] = r.seconds
        return out

    def format(self) -> str:
        lines = ["", "== recsys-spark summary =="]
        for r in self.stages.values():
            lines += r.lines()
        lines += [f"wrote {name}: {path}" for r in self.stages.values() for name, path in r.paths.items()]
        if self.stages:
            lines.append("seconds: " + "  ".join(f"{name} {r.seconds:.1f}" for name, r in self.stages.items()))
        train = self.get(TrainResult)
        if train and train.steps:
            lines.append("  of which train: " + "  ".join(f"{k} {v:.1f}" for k, v in train.steps.items()))
        if self.linear_algebra:
            lines.append(f"linear algebra: {self.linear_algebra}")
        if self.report:
            lines.append(f"report: {self.report}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """{"stages": {name: {field: value}}}: what `--summary-json` writes."""
        return {"stages": {name: dataclasses.asdict(r) for name, r in self.stages.items()}}


@dataclass(kw_only=True)
class EffectResult(StageResult):
    stage: ClassVar[str] = "effect"
    served_date: dt.date
    run_id: str
    data_end: dt.date  # the last event date: windows ending later are not yet observable
    arms: dict[str, int]  # treatment / control -> users
    fraction: float  # the configured control fraction
    srm_chi2: float
    srm_p_value: float
    estimates: list[
        dict[str, Any]
    ]  # one per outcome, window and cohort ("all" first); see analytics.estimator.Estimate
    not_observable: list[int] = field(default_factory=list)  # windows (days) ending after the data

    SRM_ALPHA: ClassVar[float] = 0.001

    def overall(self) -> list[dict[str, Any]]:
        return [e for e in self.estimates if e["cohort"] == "all"]

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {
            "effect_users_treatment": self.arms.get("treatment", 0),
            "effect_users_control": self.arms.get("control", 0),
            "effect_srm_p_value": self.srm_p_value,
        }
        for e in self.overall():
            base = f"effect_{e['outcome']}_{e['window_days']}d"
            out |= {
                base: e["effect"],
                f"{base}_ci_low": e["ci_low"],
                f"{base}_ci_high": e["ci_high"],
                f"{base}_cuped": e["effect_cuped"],
                f"{base}_cuped_ci_low": e["ci_low_cuped"],
                f"{base}_cuped_ci_high": e["ci_high_cuped"],
                f"{base}_variance_ratio": e["variance_ratio"],
                f"{base}_mde": e["mde"],
                f"{base}_control": e["mean_control"],
                f"{base}_treatment": e["mean_treatment"],
            }
        return {k: v for k, v in out.items() if v is not None and v == v}  # NaN is not a metric

    def lines(self) -> list[str]:
        t, c = self.arms.get("treatment", 0), self.arms.get("control", 0)
        out = [
            f"effect of recommendations, served {self.served_date} (run {self.run_id}): {t:,} treatment vs {c:,} "
            f"control users, intent to treat; treatment - control, 95% interval (CUPED: adjusted for active days "
            "before serving)"
        ]
        for e in self.overall():
            unit = " pp" if e["outcome"] == "return" else ""
            k = 100.0 if e["outcome"] == "return" else 1.0

            def iv(lo: float, hi: float, k: float = k, unit: str = unit) -> str:
                return f"[{lo * k:+.2f}, {hi * k:+.2f}]{unit}"

            label = {"return": "returned", "active_days": "active days", "purchases": "purchases"}[e["outcome"]]
            out.append(
                f"  {label} within {e['window_days']}d: {e['effect'] * k:+.2f}{unit} {iv(e['ci_low'], e['ci_high'])}; "
                f"CUPED {e['effect_cuped'] * k:+.2f}{unit} {iv(e['ci_low_cuped'], e['ci_high_cuped'])}, variance x"
                f"{e['variance_ratio']:.2f}; control {e['mean_control'] * k:.2f}{unit.strip() and '%'}, "
                f"MDE {e['mde'] * k:.2f}{unit}"
            )
        for w in self.not_observable:
            out.append(
                f"  within {w}d: not yet observable (the data ends {self.data_end}; needs events to "
                f"{self.served_date + dt.timedelta(days=w)})"
            )
        flag = "MISMATCH: the assignment looks broken" if self.srm_p_value < self.SRM_ALPHA else "ok"
        out.append(
            f"  sample ratio: control {c / max(t + c, 1):.3f} of users vs {self.fraction} configured, "
            f"chi-square {self.srm_chi2:.2f}, p {self.srm_p_value:.3g}: {flag}"
        )
        return out


@dataclass(kw_only=True)
class SimulateResult(StageResult):
    stage: ClassVar[str] = "simulate"
    effect_strength: float  # simulate.effect
    days: int
    rounds: list[dict[str, Any]]  # one per round: true_effect, estimate, ci_low, ci_high, covered, ...

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.rounds:
            k = r["round"]
            out |= {
                f"sim_true_effect_r{k}": r["true_effect"],
                f"sim_estimate_r{k}": r["estimate"],
                f"sim_ci_low_r{k}": r["ci_low"],
                f"sim_ci_high_r{k}": r["ci_high"],
                f"sim_estimate_cuped_r{k}": r["estimate_cuped"],
            }
        return out

    def lines(self) -> list[str]:
        out = [
            f"simulation (simulate.effect={self.effect_strength}): returned within {self.days}d, treatment - control, "
            "the simulator's exact true effect beside the estimate and its 95% interval"
        ]
        for r in self.rounds:

            def pp(v: float) -> str:
                return f"{v * 100:+.2f}"

            out.append(
                f"  round {r['round']} (served {r['served_date']}, {r['users_treatment']:,} vs {r['users_control']:,} "
                f"users): true {pp(r['true_effect'])} pp, estimate {pp(r['estimate'])} "
                f"[{pp(r['ci_low'])}, {pp(r['ci_high'])}] {'covers' if r['covered'] else 'MISSES'} it; CUPED "
                f"{pp(r['estimate_cuped'])} [{pp(r['ci_low_cuped'])}, {pp(r['ci_high_cuped'])}]"
            )
        return out
