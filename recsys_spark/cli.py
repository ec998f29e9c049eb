"""`recsys-spark` command line: one subcommand per job, plus `run` for the whole pipeline.

The SparkSession is built here (the edge) and stopped on the way out. Errors a user can fix are
printed as one line naming the bad value and the fix; the exit code is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import Config, ConfigError, load_config
from .errors import RecsysError

log = logging.getLogger("recsys_spark")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsys-spark", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config (default: built-in local defaults, same as conf/local.yaml)")
    common.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. ingest.max_bad_fraction=0.05")
    common.add_argument("--parent-run-id", help="attach this job's MLflow run to a parent run started elsewhere")
    common.add_argument("--summary-json", metavar="PATH", help="also write the summary printed at the end as JSON, for scripts")
    sub.add_parser("generate", parents=[common], help="write synthetic raw events to input.path")
    ing = sub.add_parser("ingest", parents=[common], help="validate raw events into clean events + quarantine")
    ing.add_argument("--from", dest="date_from", type=dt.date.fromisoformat, help="first event_date to read (YYYY-MM-DD)")
    ing.add_argument("--to", dest="date_to", type=dt.date.fromisoformat, help="last event_date to read (YYYY-MM-DD)")
    sub.add_parser("train", parents=[common], help="fit (and tune) ALS on clean events; evaluate against popularity; save the model")
    rec = sub.add_parser("recommend", parents=[common], help="write top-N recommendations per user from a saved model")
    rec.add_argument("--model", help="model directory (default: <output.root>/model)")
    rec.add_argument("--users", help="comma-separated user ids (default: every user the model knows)")
    sub.add_parser("retention", parents=[common], help="cohort retention, stickiness (DAU/MAU), quality by cohort")
    sub.add_parser("run", parents=[common], help="the whole pipeline: generate if needed, ingest, train, recommend, retention")
    cmp = sub.add_parser("compare", help="compare MLflow runs: chosen params and metrics as a table")
    cmp.add_argument("--config", help="YAML config (for tracking.uri and tracking.experiment)")
    cmp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cmp.add_argument("--runs", help="comma-separated run ids (default: the last --last runs of the experiment)")
    cmp.add_argument("--last", type=int, default=10, help="how many recent runs (default 10)")
    cmp.add_argument("--job", default="pipeline", help="job tag to list (default pipeline; 'all' for every run)")
    cmp.add_argument("--params", default="chosen.rank,chosen.reg_param,chosen.alpha,split.method", help="comma-separated params")
    cmp.add_argument("--metrics", default="ndcg_at_10,baseline_ndcg_at_10,recall_at_10,rows_clean,seconds_train", help="comma-separated metrics")
    cmp.add_argument("--sort-by", default="ndcg_at_10", help="metric to sort by, descending")
    cmp.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    return p


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config, args.set)
    if getattr(args, "date_from", None):
        cfg.ingest.date_from = args.date_from
    if getattr(args, "date_to", None):
        cfg.ingest.date_to = args.date_to
    if getattr(args, "model", None):
        cfg.recommend.model = args.model
    if getattr(args, "users", None):
        cfg.recommend.users = [u.strip() for u in args.users.split(",") if u.strip()]
    return cfg


def _stage(command: str) -> Callable[..., dict[str, Any]]:
    from . import stages  # imports pyspark; kept out of `--help`

    if command == "run":
        return stages.run_pipeline
    return lambda spark, cfg: stages.run_job(command, spark, cfg)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        cfg = _config(args)
        from . import tracking

        tracking.start(cfg)  # a wrong tracking URI fails here, before any Spark work
        if args.command == "compare":
            from .compare import compare_runs

            print(compare_runs(cfg, args))
            return 0
        from .session import build_session

        spark = build_session(cfg)
        try:
            name = "pipeline" if args.command == "run" else args.command
            with tracking.tracked_run(cfg, name, parent_run_id=args.parent_run_id):
                tracking.log_config(cfg, spark.sparkContext.master)
                summary = _stage(args.command)(spark, cfg)
        finally:
            spark.stop()
    except (ConfigError, RecsysError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    if getattr(args, "summary_json", None):
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=2, default=str)
    return 0


def format_summary(summary: dict[str, Any]) -> str:
    lines = ["", "== recsys-spark summary =="]
    if "rows_read" in summary:
        lines.append(f"rows read {summary['rows_read']:,}  clean {summary['rows_clean']:,}  quarantined {summary['rows_quarantined']:,}")
        for reason, n in summary.get("quarantined_by_reason", {}).items():
            lines.append(f"  quarantined {reason}: {n:,}")
    if "metrics" in summary:
        m = summary["metrics"]
        sp = summary.get("split", {})
        how = (f"train before {sp['cutoff'][:10]}, test to {sp['test_end'][:10]}" if "cutoff" in sp
               else f"random {sp.get('test_fraction')} of each user's items held out")
        lines.append(f"ALS vs popularity baseline on {m.get('users_evaluated', 0):,} test users ({how}):")
        lines.append(f"  {'metric':<18}{'ALS':>8}{'baseline':>10}")
        for name in (k for k in m if not k.startswith("baseline_") and k != "users_evaluated"):
            lines.append(f"  {name:<18}{m[name]:>8.4f}{m['baseline_' + name]:>10.4f}")
        lines.append(f"  chosen params: {summary.get('chosen_params')}")
    if "recommendations" in summary:
        lines.append("recommendations: " + ", ".join(f"{n:,} rows from {src}" for src, n in sorted(summary["recommendations"].items())))
    if "retention_headline" in summary:
        unit = summary.get("retention_granularity", "period")
        lines.append(f"retention of the three largest cohorts ({unit} 1 / {unit} 4, bounded):")
        for c in summary["retention_headline"]:
            lines.append(f"  cohort {c['cohort']} ({c['size']:,} users): {_pct(c['period_1'])} / {_pct(c['period_4'])}")
        lines.append(f"DAU/MAU, mean over the last 30 days: {summary['dau_mau_last_30_days']:.3f}")
    for q in summary.get("quality_by_cohort", [])[-3:]:
        lines.append(f"  cohort {q['cohort']}: {q['users_evaluated']} evaluated, NDCG {q['mean_ndcg']:.3f}, hit rate {q['hit_rate']:.2f}, "
                     f"came back after the test: {_pct(q['retained_with_hit'])} with a hit vs {_pct(q['retained_without_hit'])} without")
    for name, path in summary.get("paths", {}).items():
        lines.append(f"wrote {name}: {path}")
    from .stages import PIPELINE  # already imported by the run that made `summary`

    secs = {k.removeprefix("seconds_"): v for k, v in summary.items() if k.startswith("seconds_")}
    stages = [k for k in secs if k in {name for name, _ in PIPELINE}]
    if secs:
        lines.append("seconds: " + "  ".join(f"{k} {secs[k]:.1f}" for k in stages or secs))
    steps = [k for k in secs if k not in stages]
    if stages and steps:
        lines.append("  of which train: " + "  ".join(f"{k} {secs[k]:.1f}" for k in steps))
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


if __name__ == "__main__":
    sys.exit(main())
