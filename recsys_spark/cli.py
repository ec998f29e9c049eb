"""`recsys-spark` command line: one subcommand per job, plus `run` for the whole pipeline.

The SparkSession is built here (the edge) and stopped on the way out. Errors a user can fix are
printed as one line naming the bad value and the fix; the exit code is non-zero on any failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from recsys_spark.config import Config, ConfigError, read_config, validate
from recsys_spark.errors import RecsysError

log = logging.getLogger("recsys_spark")
NO_USER_DATA = ("compare", "report", "config")  # no Spark, no user ids: these need no pseudonym key


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsys-spark", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="YAML config (default: built-in local defaults, same as conf/local.yaml)")
    common.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. ingest.max_bad_fraction=0.05",
    )
    common.add_argument("--parent-run-id", help="attach this job's MLflow run to a parent run started elsewhere")
    common.add_argument(
        "--summary-json", metavar="PATH", help="also write the summary printed at the end as JSON, for scripts"
    )
    common.add_argument(
        "--verbose", action="store_true", help="also show Spark's stage bars and log lines (spark.verbose=true)"
    )
    sub.add_parser("generate", parents=[common], help="write synthetic raw events to input.path")
    ing = sub.add_parser("ingest", parents=[common], help="validate raw events into clean events + quarantine")
    ing.add_argument(
        "--from", dest="date_from", type=dt.date.fromisoformat, help="first event_date to read (YYYY-MM-DD)"
    )
    ing.add_argument("--to", dest="date_to", type=dt.date.fromisoformat, help="last event_date to read (YYYY-MM-DD)")
    trn = sub.add_parser(
        "train",
        parents=[common],
        help="fit (and tune) ALS and EASE on clean events; evaluate against popularity; save what serves",
    )
    rec = sub.add_parser("recommend", parents=[common], help="write top-N recommendations per user from a saved model")
    rec.add_argument("--model", help="model directory (default: <output.root>/model)")
    rec.add_argument("--users", help="comma-separated user ids (default: every user the model knows)")
    rec.add_argument(
        "--fold-in",
        action="store_true",
        help="serve users with events newer than the model from their whole current history, new users included",
    )
    stm = sub.add_parser(
        "stream",
        parents=[common],
        help="ingest raw files as they land (exactly once) and refresh their users' lists with fold-in",
    )
    stm.add_argument(
        "--once", action="store_true", help="what has landed, then stop (Trigger.AvailableNow: for a scheduler)"
    )
    sub.add_parser(
        "items",
        parents=[common],
        help="item texts -> embeddings; new items placed by text: new_items and similar_items tables",
    )
    sub.add_parser("retention", parents=[common], help="cohort retention, stickiness (DAU/MAU), quality by cohort")
    sub.add_parser(
        "evaluate-new-items",
        parents=[common],
        help="hold out items whole; rank them from text against random and content baselines (needs text.path)",
    )
    run = sub.add_parser(
        "run",
        parents=[common],
        help="the whole pipeline: generate if needed, ingest, train, recommend, items, retention",
    )
    for scheduled in (trn, run):
        scheduled.add_argument(
            "--if-changed",
            action="store_true",
            help="skip train when the saved model was fitted on exactly these events (train.if_changed)",
        )
    eff = sub.add_parser(
        "effect",
        parents=[common],
        help="treatment vs control after a served run: effect on returning, active days, purchases, with intervals",
    )
    served = eff.add_mutually_exclusive_group()
    served.add_argument("--run-id", dest="effect_run_id", help="the recommend run to measure (default: the latest)")
    served.add_argument(
        "--served-date", type=dt.date.fromisoformat, help="the serving date to measure (YYYY-MM-DD; default: latest)"
    )
    sim = sub.add_parser(
        "simulate",
        parents=[common],
        help="the feedback loop with a known effect: train, serve both arms, simulated responses, effect; per round",
    )
    sim.add_argument("--rounds", type=int, default=2, help="rounds to run (default 2)")
    fgt = sub.add_parser(
        "forget", parents=[common], help="erase users' rows from every table and keep them out of later ingests"
    )
    who = fgt.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", dest="forget_users", help="comma-separated raw user ids")
    who.add_argument("--users-file", help="a text file with one raw user id per line")
    look = sub.add_parser(
        "lookup",
        parents=[common],
        help="print one user's latest recommendations, given the raw id (and the key, when privacy.pseudonymize is on)",
    )
    look.add_argument("--user", required=True, help="the raw user id")
    rep = sub.add_parser(
        "report",
        help="one self-contained HTML page of a pipeline run, from what it logged to MLflow; "
        "also logged to the run as report.html",
    )
    rep.add_argument("--config", help="YAML config (for tracking.uri, tracking.experiment and output.root)")
    rep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    rep.add_argument("--run-id", help="a pipeline run's id (default: the experiment's latest pipeline run)")
    rep.add_argument("--out", help="the HTML file to write (default: <output.root>/reports/report-<run id>.html)")
    shw = sub.add_parser(
        "config", help="print the resolved config: every key, its value and where it came from (no Spark)"
    )
    shw.add_argument("--config", help="YAML config (default: the built-in defaults)")
    shw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    shw.add_argument(
        "--show", action="store_true", required=True, help="print `key = value  [default | <file> | --set]`"
    )
    cmp = sub.add_parser("compare", help="compare MLflow runs: chosen params and metrics as a table")
    cmp.add_argument("--config", help="YAML config (for tracking.uri and tracking.experiment)")
    cmp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    cmp.add_argument("--runs", help="comma-separated run ids (default: the last --last runs of the experiment)")
    cmp.add_argument("--last", type=int, default=10, help="how many recent runs (default 10)")
    cmp.add_argument("--job", default="pipeline", help="job tag to list (default pipeline; 'all' for every run)")
    cmp.add_argument(
        "--params", default="chosen.rank,chosen.reg_param,chosen.alpha,split.method", help="comma-separated params"
    )
    cmp.add_argument(
        "--metrics",
        default="ndcg_at_10,baseline_ndcg_at_10,recall_at_10,rows_clean,seconds_train",
        help="comma-separated metrics",
    )
    cmp.add_argument("--sort-by", default="ndcg_at_10", help="metric to sort by, descending")
    cmp.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    return p


def _config(args: argparse.Namespace) -> Config:
    cfg = read_config(args.config, args.set)
    if getattr(args, "verbose", False):
        cfg.spark.verbose = True
    if getattr(args, "date_from", None):
        cfg.ingest.date_from = args.date_from
    if getattr(args, "date_to", None):
        cfg.ingest.date_to = args.date_to
    if getattr(args, "model", None):
        cfg.recommend.model = args.model
    if getattr(args, "effect_run_id", None):
        cfg.effect.run_id = args.effect_run_id
    if getattr(args, "served_date", None):
        cfg.effect.served_date = args.served_date
    if getattr(args, "once", False):
        cfg.stream.once = True
    if getattr(args, "if_changed", False):
        cfg.train.if_changed = True
    if getattr(args, "fold_in", False):
        cfg.recommend.fold_in = True
    if getattr(args, "users", None) is not None:
        cfg.recommend.users = [u.strip() for u in args.users.split(",") if u.strip()]
    return validate(cfg)


def _forget_job(args: argparse.Namespace):
    """The forget job bound to the users of --users / --users-file (kept out of the config, which is logged)."""
    from recsys_spark.jobs.forget import forget, read_users_file

    users = (
        read_users_file(args.users_file)
        if args.users_file
        else [u.strip() for u in args.forget_users.split(",") if u.strip()]
    )
    return lambda spark, cfg: forget(spark, cfg, users)


def _simulate_job(rounds: int):
    """The simulate job bound to --rounds."""
    from recsys_spark.jobs.simulate import simulate

    if rounds < 1:
        raise ConfigError(f"--rounds must be at least 1, got {rounds}")
    return lambda spark, cfg: simulate(spark, cfg, rounds)


def _lookup(args: argparse.Namespace, cfg: Config) -> int:
    """One user's latest list: read-only, so no MLflow run and no lock."""
    from recsys_spark.events.privacy import check_root_setting
    from recsys_spark.infra.session import command_session
    from recsys_spark.jobs.lookup import lookup

    check_root_setting(cfg.output.root, cfg.privacy, record=False)
    with command_session(cfg) as spark:
        print(lookup(spark, cfg, args.user))
    return 0


def _compare(args: argparse.Namespace, cfg: Config) -> int:
    from recsys_spark.mlops import tracking
    from recsys_spark.mlops.compare import compare_runs

    tracking.start(cfg)  # a wrong tracking URI fails here
    print(compare_runs(cfg, args))
    return 0


def _report(args: argparse.Namespace, cfg: Config) -> int:
    from recsys_spark.mlops import tracking
    from recsys_spark.mlops.report import write_report

    tracking.start(cfg)
    print(f"report: {write_report(args.run_id, cfg.tracking.experiment, args.out, cfg.reports_dir)}")
    return 0


def _job(args: argparse.Namespace, cfg: Config) -> int:
    """A Spark job or the pipeline: bound arguments checked, tracking started and the output root
    locked before Spark starts; the summary printed (and written as JSON when asked)."""
    from recsys_spark.events.privacy import check_root_setting
    from recsys_spark.infra.lock import check_output_root, output_lock
    from recsys_spark.mlops import tracking

    bound = None  # a job bound to its command-line arguments: an unreadable --users-file fails before Spark
    if args.command == "forget":
        bound = _forget_job(args)
    elif args.command == "simulate":
        bound = _simulate_job(args.rounds)
    tracking.start(cfg)  # a wrong tracking URI fails here, before any Spark work
    name = "pipeline" if args.command == "run" else args.command
    check_output_root(cfg.output.root)
    with output_lock(cfg.output.root, name):
        if args.command != "generate":  # generate writes the raw input only, which is the caller's
            check_root_setting(cfg.output.root, cfg.privacy)
        result = _run(args, cfg, name, bound)
    print(result.format())
    if getattr(args, "summary_json", None):
        with open(args.summary_json, "w") as f:
            json.dump(result.to_json(), f, indent=2, default=str)
    return 0


def _show_config(args: argparse.Namespace, cfg: Config) -> int:
    """Every key of the validated config with its value (secrets and user ids redacted as they are
    logged) and where it came from: the built-in default, the --config file, or --set."""
    from recsys_spark.config import flatten, sources
    from recsys_spark.mlops.tracking import redact

    where = sources(args.config, args.set)
    for key, value in redact(flatten(cfg.to_dict())).items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        print(f"{key} = {text}  [{where.get(key, 'default')}]")
    return 0


# Commands that are not a Spark job of the output root; every other command is `_job`.
HANDLERS: dict[str, Callable[[argparse.Namespace, Config], int]] = {
    "lookup": _lookup,
    "compare": _compare,
    "report": _report,
    "config": _show_config,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    try:
        cfg = _config(args)
        if not cfg.spark.verbose:
            _quiet_mlflow()
        if args.command not in NO_USER_DATA:
            from recsys_spark.events.privacy import pseudonym_key

            pseudonym_key(cfg.privacy)  # pseudonymizing without the key fails here, before any work
        return HANDLERS.get(args.command, _job)(args, cfg)
    except (ConfigError, RecsysError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _quiet_mlflow() -> None:
    """Without --verbose, only MLflow's warnings and errors print: not its INFO lines (database set-up,
    experiment created) nor its artifact download bars; the summary says what a person acts on."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())  # in case it is imported already
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _run(args: argparse.Namespace, cfg: Config, name: str, bound: Any) -> Any:
    """One command's Spark work in its MLflow run, after a killed run's leftovers are recovered."""
    from recsys_spark.events.sources import check_local_input
    from recsys_spark.infra import blas
    from recsys_spark.infra.session import command_session
    from recsys_spark.infra.versions import recover
    from recsys_spark.jobs.runner import run_job, run_pipeline
    from recsys_spark.mlops import tracking

    with tracking.tracked_run(cfg, name, parent_run_id=args.parent_run_id):
        leftovers = recover(
            cfg.output.root, cfg.checkpoint_dir, cfg.output.keep_versions
        )  # a killed run's half-done work
        for done in leftovers:
            log.warning("[recover] %s", done)
        for run_id in tracking.end_orphaned_runs(cfg):
            log.warning("[recover] MLflow run %s was left RUNNING by a killed process: marked KILLED", run_id)
        if args.command in ("ingest", "stream") or (args.command == "run" and cfg.input.path is not None):
            check_local_input(cfg.input_path)  # a missing local path fails here, before Spark starts
        with command_session(cfg) as spark:
            tracking.log_config(cfg, spark.sparkContext.master)
            tracking.log_tags(blas.loaded(spark))
            result = run_pipeline(spark, cfg) if args.command == "run" else run_job(name, spark, cfg, bound)
            result.linear_algebra = blas.describe(spark)
    return result


if __name__ == "__main__":
    sys.exit(main())
