"""Pseudonymous outputs and erasure on real runs: the same raw events through the pipeline plain and
pseudonymized (same metrics and retention; no raw id in any output file or the MLflow store), a
user looked up by raw id, forget and a later ingest, a missing key refused."""

import datetime as dt
import os
from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from recsys_spark import cli
from recsys_spark.events.privacy import pseudonym
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.forget import forget
from recsys_spark.jobs.lookup import lookup
from recsys_spark.jobs.runner import JOBS, run_pipeline
from recsys_spark.mlops import tracking
from recsys_spark.results import IngestResult, TrainResult

from support import inside, mlflow_state, small_config, tiny_training

PLANTED = "planted-user-4711"
KEY = "test-key-0123456789abcdef"
T0 = dt.datetime(2026, 1, 6, 8, 0, 1)  # the generator starts its days later than 08:00:01
PLANTED_ROWS = [
    (PLANTED, f"i{i:06d}", "purchase", T0 + dt.timedelta(days=d), 1.0, (T0 + dt.timedelta(days=d)).date())
    for d, i in [(0, 1), (1, 2), (3, 3), (8, 5), (15, 8)]
]
PLANTED_BAD = [(PLANTED, "i000009", "bogus", T0 + dt.timedelta(days=2), None, (T0 + dt.timedelta(days=2)).date())]


def configured(root, raw, store, pseudonymize):
    cfg = tiny_training(small_config(str(root)))
    cfg.input.path, cfg.input.format = str(raw), "parquet"
    cfg.tracking.uri = f"sqlite:///{store}"
    cfg.privacy.pseudonymize = pseudonymize
    cfg.privacy.erasure_list = str(root.parent / f"erased-{root.name}")
    return cfg


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory):
    """The same raw events (generated + a planted user) through the whole pipeline, plain and
    pseudonymized, each tracked in its own SQLite store with artifacts under its folder."""
    base = tmp_path_factory.mktemp("privacy")
    gen = small_config(str(base / "gen"))
    JOBS["generate"](spark, gen)
    planted = spark.createDataFrame(PLANTED_ROWS + PLANTED_BAD, spark.read.parquet(gen.input_path).schema)
    spark.read.parquet(gen.input_path).unionByName(planted).write.partitionBy("event_date").parquet(str(base / "raw"))
    os.environ["RECSYS_PSEUDONYM_KEY"] = KEY
    out = {}
    for name, on in (("plain", False), ("pseudo", True)):
        (base / name).mkdir()
        with inside(base / name), mlflow_state():  # MLflow's default artifact root ./mlruns lands in this run's folder
            cfg = configured(base / name / "out", base / "raw", base / name / "mlflow.db", on)
            tracking.start(cfg)
            with tracking.tracked_run(cfg, "pipeline"):
                tracking.log_config(cfg, spark.sparkContext.master)
                out[name] = (cfg, run_pipeline(spark, cfg))
    yield base, out
    os.environ.pop("RECSYS_PSEUDONYM_KEY", None)


def strings_in(path: Path) -> str:
    """Everything a file says: the string values of a Parquet file, the bytes of any other file."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        return "\n".join(str(v) for col in table.columns for v in col.to_pylist())
    return path.read_bytes().decode("latin-1")


def files_holding(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and needle in strings_in(p)]


def test_metrics_and_retention_are_the_same_with_pseudonyms(spark, runs):
    _, out = runs
    (plain_cfg, plain), (pseudo_cfg, pseudo) = out["plain"], out["pseudo"]
    events = read_table(spark, plain_cfg.path("events"))
    firsts = events.groupBy("user_id").agg(F.min("event_ts").alias("t"))
    assert firsts.select("t").distinct().count() == firsts.count()  # the precondition: users start at distinct instants
    # Equal up to the order Spark sums per-user floats in (last-bit differences, 1e-16).
    assert pseudo.get(TrainResult).quality == pytest.approx(plain.get(TrainResult).quality, rel=1e-12, abs=1e-12)
    assert plain.get(TrainResult).chosen_params == pseudo.get(TrainResult).chosen_params
    for table in ("retention/cohorts", "retention/stickiness", "retention/quality_by_cohort", "eval/metrics"):
        assert_approx_df_equality(
            read_table(spark, pseudo_cfg.path(table)),
            read_table(spark, plain_cfg.path(table)),
            1e-12,
            ignore_row_order=True,
        )
    # The tables hold the keyed hash of each id, not the id.
    pseudo_events = read_table(spark, pseudo_cfg.path("events"))
    assert pseudo_events.where(F.col("user_id") == pseudonym(KEY.encode(), PLANTED)).count() == len(PLANTED_ROWS)
    assert pseudo_events.where(F.col("user_id").startswith("u0")).count() == 0


def test_no_raw_user_id_in_any_output_or_the_mlflow_store(spark, runs):
    base, out = runs
    plain_cfg, _ = out["plain"]
    some_ids = [
        r.user_id for r in read_table(spark, plain_cfg.path("events")).select("user_id").distinct().limit(5).collect()
    ]
    raw = str(base / "raw")
    # The plain run shows where the ids would be: outputs, the model artifact, the MLflow store.
    assert files_holding(base / "plain" / "out", PLANTED) and files_holding(base / "plain" / "mlruns", PLANTED)
    for needle in [PLANTED, *some_ids]:
        leaks = [p for p in files_holding(base / "pseudo", needle) if not str(p).startswith(raw)]
        assert not leaks, f"{needle} found in {leaks[:5]}"
    assert KEY not in "".join(
        strings_in(p) for p in (base / "pseudo").rglob("*") if p.is_file() and p.suffix != ".parquet"
    )
    # The planted user's quarantined row holds the pseudonym too.
    pseudo_cfg, _ = out["pseudo"]
    bad = read_table(spark, pseudo_cfg.path("quarantine")).where(
        (F.col("event_type") == "bogus") & (F.col("item_id") == "i000009")
    )
    assert pseudonym(KEY.encode(), PLANTED) in {r.user_id for r in bad.collect()}


def test_lookup_finds_a_user_by_raw_id(spark, runs):
    _, out = runs
    cfg, _ = out["pseudo"]
    text = lookup(spark, cfg, PLANTED)
    assert text.startswith(f"user {PLANTED} (pseudonym {pseudonym(KEY.encode(), PLANTED)[:12]}...): 5 recommendations")
    assert text.count("because of ") == 5
    assert "no recommendations" in lookup(spark, cfg, "somebody-else")


def test_forget_removes_exactly_the_users_and_later_ingests_keep_them_out(spark, runs):
    base, out = runs
    cfg, _ = out["pseudo"]
    gone = [pseudonym(KEY.encode(), u) for u in (PLANTED, "u0000001")]

    def counts(table, col="user_id"):
        return {
            "theirs": read_table(spark, cfg.path(table)).where(F.col(col).isin(gone)).count(),
            "all": read_table(spark, cfg.path(table)).count(),
        }

    before = {t: counts(t) for t in ("events", "recommendations", "eval/per_user")}
    before["quarantine"] = counts("quarantine")
    assert before["events"]["theirs"] > len(PLANTED_ROWS) and before["quarantine"]["theirs"] == 1
    tracking.start(cfg)
    with tracking.tracked_run(cfg, "forget"):
        result = forget(spark, cfg, [PLANTED, "u0000001", PLANTED])
    assert result.users == 2 and result.listed == 2
    for table, c in before.items():
        assert result.rows_removed[table] == c["theirs"]
        assert counts(table) == {"theirs": 0, "all": c["all"] - c["theirs"]}
    client = mlflow.MlflowClient()
    model_run = client.get_run(result.model_run)
    assert model_run.data.tags["trained_on_erased_data"] == "true" and model_run.data.tags["job"] == "train"
    versions = client.search_model_versions(f"run_id = '{result.model_run}'")  # the registered model too
    assert versions and all(v.tags.get("trained_on_erased_data") == "true" for v in versions)
    assert all(v.tags.get("erased_data_removed") == "true" for v in versions)
    # The rewritten model is the new champion, and it answers the erased ids as users it never saw.
    name = cfg.train.registered_model
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.run_id != result.model_run and champion.version not in {v.version for v in versions}
    served = mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(pd.DataFrame({"user_id": gone}))
    assert set(served.source) == {"popular_unknown_user"}
    assert any(k.startswith("metric.ndcg_at_") for k in champion.tags)  # the score the next train must beat

    # A later ingest of the same raw events leaves them out, and says how many rows that was.
    again = JOBS["ingest"](spark, cfg)
    assert isinstance(again, IngestResult)
    assert again.rows_erased == before["events"]["theirs"] + before["quarantine"]["theirs"]
    assert again.rows_clean + again.rows_quarantined + again.rows_erased == again.rows_read
    assert counts("events") == {"theirs": 0, "all": before["events"]["all"] - before["events"]["theirs"]}
    assert forget(spark, cfg, [PLANTED]).rows_removed["events"] == 0  # forgetting again: nothing left, still listed
    # A second forget finds what the first one logged (the rewritten model names its run) and replaces it too.
    third = pseudonym(KEY.encode(), "u0000002")
    with tracking.tracked_run(cfg, "forget"):
        again_forgotten = forget(spark, cfg, ["u0000002"])
    assert again_forgotten.model_run == champion.run_id and again_forgotten.model_run_tagged
    assert client.get_model_version(name, champion.version).tags.get("erased_data_removed") == "true"
    assert int(client.get_model_version_by_alias(name, "champion").version) > int(champion.version)
    # After forget and the next ingest, every file of this root and its MLflow store (tables, kept
    # versions, model, run artifacts, logged models, registry, report) is free of them; the raw
    # input (base/raw) is the caller's.
    for needle in [*gone, third]:
        leaks = files_holding(base / "pseudo", needle)
        assert not leaks, f"{needle} still in {leaks[:5]}"


def test_missing_key_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RECSYS_PSEUDONYM_KEY", raising=False)
    root = tmp_path / "out"
    code = cli.main(
        [
            "ingest",
            "--set",
            "privacy.pseudonymize=true",
            "--set",
            f"output.root={root}",
            "--set",
            "tracking.enabled=false",
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and "environment variable RECSYS_PSEUDONYM_KEY is not set" in err
        and "privacy.pseudonymize=false" in err
    )
    assert not root.exists()
    monkeypatch.setenv("RECSYS_PSEUDONYM_KEY", "short")
    assert cli.main(["train", "--set", "privacy.pseudonymize=true", "--set", f"output.root={root}"]) == 2
    assert "holds only 5 characters" in capsys.readouterr().err
