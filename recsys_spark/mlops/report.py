"""One self-contained HTML page per pipeline run, built from what the run logged to MLflow.

Everything comes from the MLflow store (the parent run's metrics and params, the stage runs'
artifacts), so a report can be written for any past run without Spark or the output tables. The
page has no script and fetches nothing: styles are inline and pictures are PNG data URIs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.entities import Run

from recsys_spark.analytics.plots import EFFECT_UNITS, by_history_png, forest_png, stickiness_png
from recsys_spark.errors import RecsysError

log = logging.getLogger(__name__)

TRAIN_STEPS = [
    "prepare",
    "tune",
    "ease",
    "als_fit",
    "evaluate",
    "ease_evaluate",
    "refit",
    "ease_fit",
    "save",
    "register",
]
ARTIFACTS = {  # what the report shows -> (stage, artifact path)
    "quarantine": ("ingest", "quarantine/summary.csv"),
    "metrics": ("train", "eval/metrics.csv"),
    "by_history": ("train", "eval/by_history.csv"),
    "tuning": ("train", "eval/tuning.csv"),
    "heatmap": ("retention", "retention/retention_heatmap.png"),
    "curves": ("retention", "retention/retention_curves.png"),
    "stickiness": ("retention", "retention/stickiness.csv"),
    "quality_by_cohort": ("retention", "retention/quality_by_cohort.csv"),
}
EFFECT_ARTIFACTS = {"effect_estimates": "effect/estimates.csv", "effect_arms": "effect/arms.csv"}
EFFECT_COLUMNS = {  # the estimates table's columns as the report shows them
    "outcome": "outcome",
    "window_days": "window (days)",
    "effect": "effect",
    "ci_low": "95% low",
    "ci_high": "95% high",
    "effect_cuped": "CUPED effect",
    "ci_low_cuped": "CUPED low",
    "ci_high_cuped": "CUPED high",
    "p_value": "p",
    "mde": "MDE",
    "mean_control": "control mean",
    "n_treatment": "treatment users",
    "n_control": "control users",
}
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}\
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0}
.missing{color:#a33}.meta{color:#555}.wide{overflow-x:auto;max-width:100%}
tr.chosen td{background:#e8f4e8;font-weight:600}"""


@dataclass
class RunData:
    """One pipeline run as the report reads it: the parent run, its stage runs, their artifacts."""

    run: Run
    stages: dict[str, Run]
    files: dict[str, bytes] = field(default_factory=dict)  # ARTIFACTS keys that were found
    effect: Run | None = None  # the latest `recsys-spark effect` run on the lists this run served
    previous: Run | None = None  # the pipeline run of the same experiment that started before this one


def find_run(experiment: str, run_id: str | None) -> Run:
    """`run_id`, which must be a pipeline run, or the latest pipeline run of `experiment`."""
    client = mlflow.MlflowClient()
    if run_id is None:
        exp = mlflow.get_experiment_by_name(experiment)
        runs = (
            []
            if exp is None
            else client.search_runs(
                [exp.experiment_id], "tags.job = 'pipeline'", max_results=1, order_by=["attributes.start_time DESC"]
            )
        )
        if not runs:
            raise RecsysError(
                f"no pipeline run in experiment {experiment!r} at {mlflow.get_tracking_uri()}: "
                "run `recsys-spark run` first, or pass --run-id"
            )
        return runs[0]
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException as e:
        raise RecsysError(f"--run-id {run_id}: no such run at {mlflow.get_tracking_uri()} ({e.message})") from e
    if run.data.tags.get("job") != "pipeline":
        raise RecsysError(
            f"--run-id {run_id} is a {run.data.tags.get('job', 'untagged')!r} run; the report takes a pipeline "
            "run (`recsys-spark run`): list them with `recsys-spark compare`"
        )
    return run


def gather(run: Run) -> RunData:
    """The stage runs nested under `run` and the artifacts the report shows."""
    client = mlflow.MlflowClient()
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    children = sorted((c for c in children if "job" in c.data.tags), key=lambda c: c.info.start_time)
    stages = {c.data.tags["job"]: c for c in children}  # in the order they ran
    data = RunData(run, stages, effect=_effect_run(run, stages), previous=_previous_run(run))
    sources = {key: (stages.get(stage), path) for key, (stage, path) in ARTIFACTS.items()}
    sources |= {key: (data.effect, path) for key, path in EFFECT_ARTIFACTS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (source, path) in sources.items():
            if source is None:
                continue
            try:
                local = mlflow.artifacts.download_artifacts(run_id=source.info.run_id, artifact_path=path, dst_path=tmp)
            except (mlflow.exceptions.MlflowException, OSError):
                continue  # the stage logged no such file (e.g. no evaluation): its section says so
            data.files[key] = Path(local).read_bytes()
    return data


def _latest(run: Run, where: str) -> Run | None:
    """The latest run of `run`'s experiment matching the search filter `where`."""
    found = mlflow.MlflowClient().search_runs(
        [run.info.experiment_id], where, max_results=1, order_by=["attributes.start_time DESC"]
    )
    return found[0] if found else None


def _previous_run(run: Run) -> Run | None:
    """The latest finished pipeline run of the same experiment that started before `run`."""
    return _latest(
        run,
        f"tags.job = 'pipeline' and attributes.status = 'FINISHED' and attributes.start_time < {run.info.start_time}",
    )


def _effect_run(run: Run, stages: dict[str, Run]) -> Run | None:
    """The latest effect run measuring what this run's recommend stage served (effect_served_run_id)."""
    served = stages.get("recommend")
    if served is None:
        return None
    return _latest(run, f"tags.job = 'effect' and params.effect_served_run_id = '{served.info.run_id}'")


def _csv(data: RunData, key: str) -> pd.DataFrame | None:
    raw = data.files.get(key)
    if raw is None:
        return None
    return pd.read_csv(io.BytesIO(raw))


def _table(frame: pd.DataFrame, chosen_row: int | None = None) -> str:
    """A scrollable table (a wide one scrolls inside the page, the page keeps its width); the row at
    position `chosen_row` is highlighted."""
    text = frame.to_html(index=False, border=0, na_rep="", float_format=lambda v: f"{v:,.4f}")  # escapes every cell
    if chosen_row is not None:
        head, body = text.split("<tbody>", 1)
        first, *rows = body.split("<tr>")
        marks = ['<tr class="chosen">' if i == chosen_row else "<tr>" for i in range(len(rows))]
        text = f"{head}<tbody>{first}" + "".join(m + r for m, r in zip(marks, rows, strict=True))
    return f'<div class="wide">{text}</div>'


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _missing(what: str) -> str:
    return f'<p class="missing">{html.escape(what)}</p>'


def _number(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.4f}"


def _change(v: float) -> str:
    """A difference as `_number` shows values, signed: +20 rows, -0.0123."""
    return f"{v:+,.0f}" if float(v).is_integer() else f"{v:+,.4f}"


def _param(v: str) -> str:
    """A param as MLflow stored it (a string), numbers to 4 significant digits."""
    try:
        return f"{float(v):.4g}" if "." in v else v
    except ValueError:
        return v


def render(data: RunData) -> str:
    """The page, as one HTML string."""
    run, m, p = data.run, data.run.data.metrics, data.run.data.params
    k = p.get("train.k", "10")
    metric = f"{p.get('tune.metric', 'ndcg')}_at_{k}"
    started = dt.datetime.fromtimestamp(run.info.start_time / 1000, dt.UTC)
    short = run.info.run_id[:8]
    out = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>recsys-spark run {short}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>recsys-spark pipeline run {short}, {started:%Y-%m-%d %H:%M}</h1>",
        f"<p class=meta>run {run.info.run_id} &middot; started {started:%Y-%m-%d %H:%M:%S} UTC &middot; "
        f"master {html.escape(p.get('spark_master', '?'))} &middot; "
        f"tracking {html.escape(mlflow.get_tracking_uri())}</p>",
        _data_line(data),
    ]

    out.append("<h2>Summary</h2>")
    summary = [
        ("rows read", "rows_read"),
        ("rows clean", "rows_clean"),
        ("rows quarantined", "rows_quarantined"),
        ("rows erased", "rows_erased"),
        ("users", "users"),
        ("items", "items"),
        ("interactions", "interactions"),
        ("test users evaluated", "users_evaluated"),
        (f"ALS {metric}", metric),
        (f"popularity {metric}", f"baseline_{metric}"),
        ("DAU/MAU, last 30 days", "dau_mau_last_30_days"),
        ("retention, period 1 (size-weighted)", "retention_period1_weighted"),
        ("retention, period 4 (size-weighted)", "retention_period4_weighted"),
    ]
    out.append(_table(pd.DataFrame([{"": label, "value": _number(m[key])} for label, key in summary if key in m])))
    chosen = {key.removeprefix("chosen."): v for key, v in p.items() if key.startswith("chosen.")}
    if chosen:
        out.append(
            "<p>chosen ALS parameters: "
            f"{html.escape(', '.join(f'{a}={_param(b)}' for a, b in sorted(chosen.items())))}</p>"
        )
    registry = data.stages["train"].data.tags.get("model_registry") if "train" in data.stages else None
    if registry:
        out.append(f"<p>model: {html.escape(registry)}</p>")
    family = data.stages["train"].data.tags.get("model_family") if "train" in data.stages else None
    validation = {k.removeprefix("validation_"): v for k, v in m.items() if k.startswith("validation_")}
    if family and len(validation) > 1:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in validation.items())
        why = "the better family on validation" if p.get("model.family", "auto") == "auto" else "model.family"
        out.append(f"<p>serves: {html.escape(family.upper())}, {why} ({scores})</p>")

    out.append("<h2>Compared with the previous run</h2>")
    out += _previous_section(data, [(label, key) for label, key in summary if key in m])

    out.append("<h2>Stage seconds</h2>")
    seconds = [{"stage": s, "seconds": f"{m[f'seconds_{s}']:.1f}"} for s in data.stages if f"seconds_{s}" in m]
    seconds += [
        {"stage": f"train: {s}", "seconds": f"{m[f'seconds_{s}']:.1f}"} for s in TRAIN_STEPS if f"seconds_{s}" in m
    ]
    out.append(_table(pd.DataFrame(seconds)) if seconds else _missing("no stage seconds were logged"))

    out.append("<h2>ALS (and EASE) vs the popularity baseline</h2>")
    metrics = _csv(data, "metrics")
    out.append(
        _table(metrics)
        if metrics is not None
        else _missing("no evaluation was logged (train did not run or had no test users)")
    )
    by_history = _csv(data, "by_history")
    if by_history is not None and not by_history.empty:
        out.append(f"<p>By training-history length ({html.escape(metric)}):</p>")
        out.append(_img(by_history_png(by_history, metric), f"{metric} by history length"))
        wide = by_history.pivot_table(
            index=["history", "users"], columns="metric", values=["als", "baseline"], sort=False
        )
        wide.columns = [f"{b} {a}" for a, b in wide.columns]
        out.append(_table(wide.reset_index()))

    out.append("<h2>Tuning trials</h2>")
    tuning = _csv(data, "tuning")
    if tuning is None:
        out.append(_missing("no tuning trials were logged (tune.enabled is false, or train did not run)"))
    else:
        row = _chosen_trial(tuning, chosen, metric)
        if row is not None:
            tuning.insert(0, "chosen", ["yes" if i == row else "" for i in range(len(tuning))])
            out.append("<p>The highlighted trial (chosen: yes) gave the parameters of the served model.</p>")
        out.append(_table(tuning, row))

    out.append("<h2>Retention by cohort</h2>")
    for key, alt in (("heatmap", "retention heatmap"), ("curves", "retention curves")):
        out.append(
            _img(data.files[key], alt)
            if key in data.files
            else _missing(f"no {alt} was logged (retention did not run)")
        )

    out.append("<h2>Stickiness over time</h2>")
    stick = _csv(data, "stickiness")
    out.append(
        _img(stickiness_png(stick), "stickiness over time")
        if stick is not None and not stick.empty
        else _missing("no stickiness table was logged (retention did not run)")
    )

    if "items" in data.stages:
        out += _items_section(data.stages["items"])

    out += _drift_section(data)
    out += _effect_section(data)

    out.append("<h2>Recommendation quality by cohort</h2>")
    out.append(
        '<p class="meta">The return rates with and without a hit are an <b>association</b>, not an effect: users '
        "who get hits differ in other ways. The effect of recommendations is measured against the control arm by "
        "<code>recsys-spark effect</code>.</p>"
    )
    quality = _csv(data, "quality_by_cohort")
    out.append(
        _table(quality)
        if quality is not None
        else _missing("no quality by cohort was logged (it needs train's evaluation)")
    )

    out.append("<h2>Quarantine by reason</h2>")
    quarantine = _csv(data, "quarantine")
    if quarantine is None:
        out.append(_missing("no quarantine summary was logged (ingest did not run)"))
    else:
        out.append(_table(quarantine) if not quarantine.empty else "<p>no row was quarantined</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _data_line(data: RunData) -> str:
    """What the run trained on, from the dataset tags of its first stage that read the events."""
    tags = next((r.data.tags for r in data.stages.values() if "dataset_input" in r.data.tags), None)
    if tags is None:
        return _missing("no stage recorded its dataset (train and retention did not run)")
    return (
        f"<p class=meta>data {html.escape(tags['dataset_input'])} &middot; "
        f"{int(tags.get('data_rows', 0)):,} clean events, {html.escape(tags.get('data_first_date', '?'))} to "
        f"{html.escape(tags.get('data_last_date', '?'))} &middot; "
        f"events table {html.escape(tags.get('dataset_path', '?'))}</p>"
    )


def _previous_section(data: RunData, shown: list[tuple[str, str]]) -> list[str]:
    """This run's summary numbers beside the previous pipeline run's, and whether they are comparable."""
    before = data.previous
    if before is None:
        return ["<p class=meta>no earlier pipeline run in this experiment</p>"]
    mine, theirs = data.run.data.params.get("input.path"), before.data.params.get("input.path")
    started = dt.datetime.fromtimestamp(before.info.start_time / 1000, dt.UTC)
    out = [
        f"<p class=meta>previous run {before.info.run_id} ({html.escape(before.info.run_name or '')}), started "
        f"{started:%Y-%m-%d %H:%M} UTC"
        + (
            f"; it read another input ({html.escape(str(theirs))}, this run {html.escape(str(mine))}): "
            "its numbers are not like for like</p>"
            if mine != theirs
            else "</p>"
        )
    ]
    old = before.data.metrics
    rows = [
        {
            "": label,
            "this run": _number(data.run.data.metrics[key]),
            "previous": _number(old.get(key)),
            "change": "" if key not in old else _change(data.run.data.metrics[key] - old[key]),
        }
        for label, key in shown
    ]
    return out + [_table(pd.DataFrame(rows))]


def _chosen_trial(tuning: pd.DataFrame, chosen: dict[str, str], metric: str) -> int | None:
    """The position of the trial whose parameters the served model has (the best-scored of them)."""
    shared = [c for c in chosen if c in tuning.columns]
    if not shared or tuning.empty:
        return None

    def same(a: object, b: str) -> bool:
        if pd.isna(a):
            return b in ("None", "", "nan")
        try:
            return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))
        except ValueError:
            return str(a) == b

    hits = tuning[[all(same(r[c], chosen[c]) for c in shared) for _, r in tuning.iterrows()]]
    if hits.empty:
        return None
    best = hits[metric].idxmax() if metric in hits and hits[metric].notna().any() else hits.index[0]
    return int(tuning.index.get_loc(best))


def _items_section(items: Run) -> list[str]:
    """The items stage, when it had item texts: counts, and each placement map's validation NDCG."""
    m = items.data.metrics
    if not m.get("items_with_text"):
        return []  # the stage was skipped: text.path is not set
    out = ["<h2>New items</h2>"]
    counts = [
        ("items with text", "items_with_text"),
        ("model items without text", "items_without_text"),
        ("new items (placed from their text)", "new_items"),
        ("new-item list rows", "new_items_rows"),
        ("similar-item rows", "similar_items_rows"),
    ]
    out.append(_table(pd.DataFrame([{"": label, "value": _number(m[key])} for label, key in counts if key in m])))
    scored = {k.removeprefix("new_items_validation_"): v for k, v in m.items() if k.startswith("new_items_validation_")}
    if scored:
        out.append("<p>Validation NDCG of each way to place a new item (the best one placed them):</p>")
        out.append(_table(pd.DataFrame({"map": list(scored), "NDCG": list(scored.values())})))
    return out


DRIFT_ROWS = [  # (label, metric of the recommend stage, as a percentage)
    ("users compared with the previous serving", "drift_users_compared", False),
    ("users whose list changed", "drift_users_changed", True),
    ("PSI of item popularity in the lists", "drift_psi_items", False),
    ("PSI of the model's scores", "drift_psi_scores", False),
    ("catalogue coverage", "drift_coverage", True),
    ("coverage change", "drift_coverage_change", True),
    ("items new to the lists", "drift_items_new", False),
    ("items gone from the lists", "drift_items_vanished", False),
]


def _drift_section(data: RunData) -> list[str]:
    """The recommend stage's lists against the previous serving's (analytics/drift.py)."""
    out = ["<h2>Drift since the previous lists</h2>"]
    served = data.stages.get("recommend")
    m = served.data.metrics if served is not None else {}
    if "drift_psi_items" not in m:  # not missing data: a first serving has nothing to drift from
        return out + ["<p>no earlier lists to compare with (the first serving date), or drift.enabled is false</p>"]
    flagged = m.get("drift_flagged", 0) > 0
    max_psi = served.data.params.get("drift.max_psi", "?")
    out.append(
        f"<p>{'<b>FLAGGED</b>: a PSI is above' if flagged else 'Both PSIs are within'} drift.max_psi "
        f"({html.escape(str(max_psi))}). PSI below 0.1 is commonly read as stable, above 0.25 as a shift. A "
        "change between runs is an association: a new model, new events and new filters all move it.</p>"
    )
    params = served.data.params
    now, was = params.get("model_id"), params.get("drift.model_before")
    if now and was:  # lists written before the table recorded the model leave `was` unknown
        same = "the same model as" if now == was else f"a different model ({html.escape(was)}) from"
        out.append(f"<p>These lists come from model {html.escape(now)}: {same} the lists compared with.</p>")
    rows = [
        {"": label, "value": f"{m[key]:.1%}" if pct else _number(m[key])} for label, key, pct in DRIFT_ROWS if key in m
    ]
    out.append(_table(pd.DataFrame(rows)))
    return out


def _effect_section(data: RunData) -> list[str]:
    """Treatment vs control for the lists this run served: the overall estimates as a table, every
    window and cohort as a forest plot, with the assumptions the interval rests on."""
    out = ["<h2>Effect of recommendations</h2>"]
    served = data.stages.get("recommend")
    estimates = _csv(data, "effect_estimates")
    if data.effect is None or estimates is None:
        how = f" --run-id {served.info.run_id}" if served is not None else ""
        return out + [
            _missing(
                "no effect was measured for the lists this run served: after the follow-up window, ingest the "
                f"new events and run `recsys-spark effect{how}` (needs recommend.holdout.fraction > 0)"
            )
        ]
    p = data.effect.data.params
    arms = _csv(data, "effect_arms")
    sizes = dict(zip(arms["arm"], arms["users"], strict=True)) if arms is not None else {}
    srm = float(arms["srm_p_value"].iloc[0]) if arms is not None and len(arms) else float("nan")
    day = html.escape(p.get("effect_served_date", "?"))
    out.append(
        f"<p class=meta>effect run {data.effect.info.run_id} &middot; served {day}"
        f" &middot; {sizes.get('treatment', 0):,} treatment vs {sizes.get('control', 0):,} control users &middot; "
        f"sample-ratio p {srm:.3g}{' (MISMATCH: the assignment looks broken)' if srm < 0.001 else ''}</p>"
        "<p>Treatment minus control, intent to treat: every assigned user counts in the arm the salted hash put "
        "them in, whether or not they came back to see the list. The interval is a normal approximation (95%) "
        "that assumes random assignment, no interference between users and outcomes counted from the ingested "
        "events after the serving day; CUPED adjusts by each user's active days before serving. Cohort rows "
        "carry Benjamini-Hochberg q-values. Return rates are shown in percentage points.</p>"
    )
    overall = estimates[estimates["cohort"] == "all"]
    shown = overall[[c for c in EFFECT_COLUMNS if c in overall]].copy()
    unit = shown["outcome"].map(lambda o: EFFECT_UNITS.get(o, (o, 1.0)))
    for col in ("effect", "ci_low", "ci_high", "effect_cuped", "ci_low_cuped", "ci_high_cuped", "mde", "mean_control"):
        if col in shown:
            shown[col] = shown[col] * unit.str[1]  # in the outcome's unit (return: points), as the forest plot
    shown["outcome"] = unit.str[0]
    out.append(_table(shown.rename(columns=EFFECT_COLUMNS)))
    out.append(_img(forest_png(estimates), "effect forest plot by window and cohort"))
    pending = p.get("effect_not_observable", "")
    if pending:
        out.append(f"<p>not yet observable (the data ends before the window does): {html.escape(pending)} days</p>")
    return out


def write_report(run_id: str | None, experiment: str, out: str | None = None, out_dir: str | Path | None = None) -> str:
    """Render the report of `run_id` (default: the latest pipeline run of `experiment`), log it as the
    run's `report.html` artifact, and write it to `out` (or `out_dir`/report-<run id>.html) when
    given. Returns where it went, for the summary."""
    run = find_run(experiment, run_id)
    page = render(gather(run))
    with tempfile.TemporaryDirectory() as tmp:
        named = Path(tmp) / "report.html"
        named.write_text(page, encoding="utf-8")
        mlflow.MlflowClient().log_artifact(run.info.run_id, str(named))
    where = f"report.html of MLflow run {run.info.run_id}"
    if out or out_dir:
        path = Path(out) if out else Path(out_dir) / f"report-{run.info.run_id}.html"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
        where = f"{path} (and {where})"
    log.info("[report] wrote %s", where)
    return where
