"""The drift report (analytics/drift.py) against a hand computation, then in the recommend job."""

import dataclasses
import datetime as dt
import math

import mlflow
import pytest
from pyspark.sql import functions as F

from recsys_spark.analytics.drift import PSI_FLOOR, drift
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.mlops import report
from recsys_spark.recs.model import load_model, save_model

from support import copied_root

SCHEMA = "user_id string, item_id string, score double, source string"


def test_drift_figures_match_a_hand_computation(spark):
    # Before: user k (1..10) got item i<k % 2> with score k. Now: every user got i0, scored 20.
    before = spark.createDataFrame([(f"u{k}", f"i{k % 2}", float(k), "als") for k in range(1, 11)], SCHEMA)
    now = spark.createDataFrame([(f"u{k}", "i0", 20.0, "als") for k in range(1, 11)], SCHEMA)
    got = drift(now, before, catalogue=4)
    f = PSI_FLOOR
    # Items: now i0 holds every slot (1, floored 0), before half each.
    psi_items = (1 - 0.5) * math.log(1 / 0.5) + (f - 0.5) * math.log(f / 0.5)
    # Scores: before's deciles are 1, 2, ..., 9 (Spark's quantile: the value at rank ceil(q n)), so its
    # bins hold 0, then 1 each for [1, 2) .. [8, 9), then 2 (9 and 10); now every score is in the last.
    psi_scores = 8 * (f - 0.1) * math.log(f / 0.1) + (1 - 0.2) * math.log(1 / 0.2) + 0.0
    assert got == pytest.approx(
        {
            "users_compared": 10,
            "users_changed": 0.5,  # the five odd users had i1
            "psi_items": psi_items,
            "psi_scores": psi_scores,
            "coverage": 0.25,  # 1 of 4 catalogue items listed
            "coverage_change": -0.25,  # from 2 of 4
            "items_new": 0,
            "items_vanished": 1,
        },
        rel=1e-6,
    )
    same = drift(before, before, catalogue=4)
    assert same["psi_items"] == same["psi_scores"] == same["users_changed"] == 0.0


def test_recommend_reports_drift_against_the_previous_serving_date(spark, trained, tmp_path):
    cfg = copied_root(trained[0], tmp_path / "out")  # its serving dates stay out of the shared tables
    day = dt.date(2031, 1, 6)  # after today, which the copy may have served on

    model = load_model(spark, cfg.path("model"))  # the same fit under another train run's id: another model
    save_model(dataclasses.replace(model, config={**model.config, "mlflow_run_id": "r-other"}), str(tmp_path / "other"))

    def serve(on: dt.date, n: int, max_psi: float, path: str | None = None):
        c = dataclasses.replace(
            cfg,
            recommend=dataclasses.replace(cfg.recommend, run_date=on, n=n, model=path),
            drift=dataclasses.replace(cfg.drift, max_psi=max_psi),
        )
        return JOBS["recommend"](spark, c)

    first = serve(day, 5, 0.25)
    assert first.drift is None and first.drift_model_before is None  # nothing earlier to compare with
    same = serve(day + dt.timedelta(days=7), 5, 0.0)  # the same model and settings: the same lists
    d = same.drift
    assert same.drift_since == day and d["users_compared"] > 0
    assert d["users_changed"] == d["psi_items"] == d["psi_scores"] == d["items_new"] == d["coverage_change"] == 0
    assert d["model_changed"] == 0 and same.drift_model_before == same.model_id == first.model_id
    assert not same.drift_flagged  # nothing moved, so not even max_psi 0 flags it
    assert same.lines()[-1].endswith(f"; model {first.model_id} (the same)")
    fewer = serve(day + dt.timedelta(days=14), 3, 0.0, str(tmp_path / "other"))  # top-3 of the same top-5s
    d = fewer.drift
    assert fewer.drift_since == day + dt.timedelta(days=7) and d["users_changed"] == 1.0 and d["items_new"] == 0
    assert d["psi_items"] > 0 and fewer.drift_flagged and "FLAGGED" in fewer.lines()[-1]
    assert fewer.metrics()["drift_flagged"] == 1.0 and fewer.metrics()["drift_users_changed"] == 1.0
    assert fewer.model_id == "r-other" and d["model_changed"] == 1.0
    assert f"; model r-other (was {first.model_id})" in fewer.lines()[-1]
    served = read_table(spark, cfg.path("recommendations")).where(F.col("run_date") >= F.lit(day))
    by_date = {
        r.run_date: r.ids for r in served.groupBy("run_date").agg(F.collect_set("model_id").alias("ids")).collect()
    }
    assert by_date == {
        day: [first.model_id],
        day + dt.timedelta(days=7): [first.model_id],
        day + dt.timedelta(days=14): ["r-other"],
    }


def test_the_report_says_which_model_served_against_which(tmp_path):
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("drift")

    def section(params: dict[str, str]) -> str:
        run = client.create_run(experiment)
        for key, value in {"drift.max_psi": "0.25", **params}.items():
            client.log_param(run.info.run_id, key, value)
        for key, value in {"drift_psi_items": 0.3, "drift_psi_scores": 0.01, "drift_flagged": 1.0}.items():
            client.log_metric(run.info.run_id, key, value)
        stage = client.get_run(run.info.run_id)
        return "".join(report._drift_section(report.RunData(run=stage, stages={"recommend": stage})))

    changed = section({"model_id": "r-new", "drift.model_before": "r-old"})
    assert "<b>FLAGGED</b>" in changed and "from model r-new: a different model (r-old) from the lists" in changed
    assert "from model r-new: the same model as the lists" in section(
        {"model_id": "r-new", "drift.model_before": "r-new"}
    )
    assert "from model" not in section({"model_id": "r-new"})  # the earlier lists did not record theirs


def test_lists_written_before_the_model_was_recorded_drift_without_a_model(spark, trained, tmp_path):
    cfg = copied_root(trained[0], tmp_path / "out")
    day = dt.date(2031, 2, 3)

    def serve(on: dt.date):
        return JOBS["recommend"](
            spark, dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, run_date=on))
        )

    serve(day)
    path = cfg.path("recommendations")
    old = read_table(spark, path).where(F.col("run_date") == F.lit(day)).drop("model_id").localCheckpoint()
    write_table(old, path, "run_date")  # that date's lists as an older version wrote them
    later = serve(day + dt.timedelta(days=7))
    assert later.drift_since == day and later.drift["users_compared"] > 0
    assert later.drift_model_before is None and "model_changed" not in later.drift  # unknown, not "changed"
    ids = read_table(spark, path, merge_schema=True).where(F.col("run_date") >= F.lit(day))
    by_date = {r.run_date: r.ids for r in ids.groupBy("run_date").agg(F.collect_set("model_id").alias("ids")).collect()}
    assert by_date == {day: [], day + dt.timedelta(days=7): [later.model_id]}
