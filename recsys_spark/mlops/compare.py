"""`recsys-spark compare`: recent (or chosen) MLflow runs as a table of params and metrics."""

from __future__ import annotations

import argparse

import mlflow
import pandas as pd

from recsys_spark.config import Config
from recsys_spark.errors import RecsysError


def runs_table(
    experiment: str,
    run_ids: list[str] | None,
    last: int,
    job: str | None,
    params: list[str],
    metrics: list[str],
    sort_by: str | None,
) -> pd.DataFrame:
    """One row per run: id, name, status, start time, then the chosen params and metrics."""
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise RecsysError(
            f"no MLflow experiment named {experiment!r} at {mlflow.get_tracking_uri()}: "
            "run a job first, or set tracking.experiment"
        )
    filters = []
    if run_ids:
        filters.append("attributes.run_id IN (" + ", ".join(f"'{r}'" for r in run_ids) + ")")
    if job and job != "all":
        filters.append(f"tags.job = '{job}'")
    runs = mlflow.search_runs(
        [exp.experiment_id],
        filter_string=" and ".join(filters),
        max_results=len(run_ids) if run_ids else last,
        order_by=["attributes.start_time DESC"],
    )
    if run_ids and len(runs) < len(run_ids):
        missing = sorted(set(run_ids) - set(runs.get("run_id", [])))
        raise RecsysError(f"run(s) not found in experiment {experiment!r}: {', '.join(missing)}")
    cols = {"run_id": "run_id", "tags.mlflow.runName": "run_name", "status": "status", "start_time": "start_time"}
    cols |= {f"params.{p}": p for p in params}
    cols |= {f"metrics.{m}": m for m in metrics}
    table = pd.DataFrame({new: runs[old] if old in runs else None for old, new in cols.items()})
    if sort_by:
        if sort_by not in table:
            raise RecsysError(f"--sort-by {sort_by!r} is not among the chosen metrics {metrics}")
        table = table.sort_values(sort_by, ascending=False, na_position="last")
    table["start_time"] = pd.to_datetime(table["start_time"]).dt.strftime("%Y-%m-%d %H:%M:%S")
    return table.reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    def cell(v) -> str:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.0f}" if v.is_integer() and abs(v) >= 1 else f"{v:.4f}"
        return str(v)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def compare_runs(cfg: Config, args: argparse.Namespace) -> str:
    def split(s):
        return [x.strip() for x in (s or "").split(",") if x.strip()]

    table = runs_table(
        cfg.tracking.experiment,
        split(args.runs),
        args.last,
        None if args.runs else args.job,
        split(args.params),
        split(args.metrics),
        args.sort_by,
    )
    return table.to_csv(index=False).rstrip("\n") if args.format == "csv" else to_markdown(table)
