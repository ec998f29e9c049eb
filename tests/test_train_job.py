"""train and recommend as jobs on small generated data: outputs, fallback, round trip, bad input."""

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import yaml
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import ALSConfig
from recsys_spark.errors import RecsysError
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.jobs.train import unchanged_since_fit, utc_iso
from recsys_spark.mlops import tracking
from recsys_spark.recs.model import fit_als, fit_settings, load_model, save_model
from recsys_spark.recs.training import evaluate
from recsys_spark.results import SplitInfo, TrainSkipped


def test_train_writes_model_metrics_tuning_and_per_user_tables(spark, trained):
    cfg, summary = trained
    # 56 days from Jan 5: data ends Mar 1; 7 follow-up days, then the 7-day test horizon before them.
    assert summary.split == SplitInfo(
        "temporal",
        cutoff=dt.datetime(2026, 2, 16),
        test_end=dt.datetime(2026, 2, 23),
        followup_end=dt.datetime(2026, 3, 2),
    )
    metrics = read_table(spark, cfg.path("eval/metrics"))
    assert sorted(r.metric for r in metrics.collect()) == sorted(
        [
            "precision_at_10",
            "recall_at_10",
            "ndcg_at_10",
            "map_at_10",
            "hit_rate_at_10",
            "catalog_coverage",
            "users_evaluated",
            "diversity_at_10",
            "novelty_at_10",
        ]
    )
    assert metrics.columns == ["metric", "als", "baseline"]
    tuning = read_table(spark, cfg.path("eval/tuning")).orderBy("trial").collect()
    assert [r.trial for r in tuning] == [1, 2, 3] and {r.state for r in tuning} <= {"complete", "pruned"}
    # Trial 1 is the configured model, clipped into the space (als.rank 32 -> 8, alpha 10 stays).
    assert (tuning[0]["rank"], tuning[0].alpha, tuning[0].max_iter, tuning[0].confidence) == (8, 10.0, 5, "linear")
    assert all(4 <= r["rank"] <= 8 and 1.0 <= r.alpha <= 10.0 and r.reg_param == 0.05 for r in tuning)
    best = max((r for r in tuning if r.state == "complete"), key=lambda r: r.ndcg_at_10)
    assert {k: summary.chosen_params[k] for k in ("rank", "alpha", "confidence")} == {
        "rank": best["rank"],
        "alpha": best.alpha,
        "confidence": best.confidence,
    }
    assert (
        summary.quality["ndcg_at_10"] > summary.quality["baseline_ndcg_at_10"]
    )  # planted clusters: the tuned model beats popularity
    by_history = read_table(spark, cfg.path("eval/by_history"))
    assert by_history.columns == ["history", "users", "metric", "als", "baseline"]
    users = {r.history: r.users for r in by_history.where("metric = 'ndcg_at_10'").collect()}
    assert set(users) <= {"1-5", "6-20", "21+"} and sum(users.values()) == summary.quality["users_evaluated"]
    per_user = read_table(spark, cfg.path("eval/per_user"))
    assert per_user.count() == summary.quality["users_evaluated"] > 0
    assert {"user_id", "ndcg", "hit_rate", "new_in_list"} <= set(per_user.columns)
    assert (
        0 < summary.quality["diversity_at_10"] < 2
        and summary.quality["novelty_at_10"] > summary.quality["baseline_novelty_at_10"]
    )
    assert (tmp := cfg.path("eval/metrics.csv")) and open(tmp).readline().strip() == "metric,als,baseline"
    # model.family=als (tiny_training): no EASE, and ALS's validation score from its trials only.
    assert summary.family == "als" and not summary.ease and not summary.ease_validation
    assert summary.validation == {"validation_als_ndcg_at_10": best.ndcg_at_10}


def test_recommendations_exclude_seen_and_follow_the_contract(spark, trained):
    cfg, _ = trained
    out = JOBS["recommend"](spark, cfg, run_id="r1")
    recs = read_table(spark, cfg.path("recommendations"))
    assert recs.columns == [
        "user_id",
        "rank",
        "item_id",
        "score",
        "source",
        "because",
        "why",
        "arm",
        "model_id",
        "run_id",
        "run_date",
    ]
    assert out.rows_by_source == {"als": recs.count()}
    assert [r.model_id for r in recs.select("model_id").distinct().collect()] == [out.model_id]
    events = read_table(spark, cfg.path("events")).select("user_id", "item_id").distinct()
    assert recs.join(events, ["user_id", "item_id"]).count() == 0  # refit on all: every seen pair excluded
    # Every row names 1-3 of the user's own items, largest share first, and says so in words.
    reasons = recs.select("user_id", "rank", "why", F.posexplode("because").alias("pos", "b"))
    assert (
        reasons.select("user_id", "rank").distinct().count() == recs.count()
        and reasons.agg(F.max("pos")).first()[0] == 2
    )
    theirs = reasons.select("user_id", F.col("b.item_id").alias("item_id")).join(
        events, ["user_id", "item_id"], "left_anti"
    )
    assert theirs.count() == 0
    assert (
        reasons.where(F.col("b.share") <= 0).count() == 0
        and recs.where(~F.col("why").startswith("because of ")).count() == 0
    )
    first = recs.select("because").first()[0]
    assert [b.share for b in first] == sorted((b.share for b in first), reverse=True)
    per_user = recs.groupBy("user_id").agg(F.count("*").alias("n"), F.max("rank").alias("hi"))
    assert per_user.where((F.col("n") != 5) | (F.col("hi") != 5)).count() == 0
    assert {r.run_id for r in recs.select("run_id").distinct().collect()} == {"r1"}


def test_unknown_users_get_the_popular_fallback(spark, trained):
    cfg, _ = trained
    c = dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, users=["nobody", "u0000001"]))
    JOBS["recommend"](spark, c, run_id="r2")
    recs = read_table(spark, cfg.path("recommendations")).where(F.col("run_id") == "r2")
    model = load_model(spark, cfg.path("model"))
    top = model.popular.join(model.items, "item_idx").orderBy(F.desc("popularity"), "item_idx").limit(5).collect()
    expected = spark.createDataFrame(
        [("nobody", i, r.item_id, "popular_unknown_user") for i, r in enumerate(top, 1)],
        "user_id string, rank int, item_id string, source string",
    )
    assert_df_equality(
        recs.where(F.col("user_id") == "nobody").select("user_id", "rank", "item_id", "source"),
        expected,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert {r.source for r in recs.where(F.col("user_id") == "u0000001").collect()} == {"als"}
    assert {(r.because, r.why) for r in recs.where(F.col("user_id") == "nobody").collect()} == {
        (None, "popular with all users: the model has never seen this user")
    }
    # Recommending for two users rewrote today's partition without losing everyone else's rows.
    today = read_table(spark, cfg.path("recommendations"))
    assert today.where(F.col("run_id") == "r1").count() > 0 and today.where(F.col("user_id") == "u0000001").count() == 5


def test_reasons_are_named_from_the_item_text_table(spark, trained):
    cfg, _ = trained
    texts = read_table(spark, cfg.path("raw_items"))  # the generator's catalogue titles
    c = dataclasses.replace(
        cfg,
        text=dataclasses.replace(cfg.text, path=cfg.path("raw_items"), format="parquet"),
        recommend=dataclasses.replace(cfg.recommend, users=["u0000001"]),
    )
    JOBS["recommend"](spark, c, run_id="r3")
    recs = read_table(spark, cfg.path("recommendations")).where(F.col("run_id") == "r3")
    named = recs.select(F.explode("because").alias("b")).select("b.item_id", "b.name")
    assert named.count() > 0
    assert (
        named.join(texts.select("item_id", F.col("title").alias("name")), ["item_id", "name"], "left_anti").count() == 0
    )
    title = named.first()["name"]
    assert recs.where(F.col("why").contains(title)).count() > 0


def test_saved_model_round_trips(spark, trained, tmp_path):
    cfg, _ = trained
    m = load_model(spark, cfg.path("model"))
    save_model(m, str(tmp_path / "copy"))
    back = load_model(spark, str(tmp_path / "copy"))
    assert back.config == m.config and 4 <= back.config["chosen"]["rank"] <= 8
    for name in ("users", "items", "seen", "popular"):
        assert_df_equality(getattr(back, name), getattr(m, name), ignore_row_order=True)
    assert_approx_df_equality(back.als.userFactors, m.als.userFactors, 0.0, ignore_row_order=True)

    def pred(model):
        return model.transform(m.seen.limit(50)).select("user_idx", "item_idx", "prediction")

    assert_approx_df_equality(pred(back.als), pred(m.als), 1e-6, ignore_row_order=True)


def test_bad_input_errors_name_the_value(spark, trained, tmp_path):
    cfg, _ = trained
    model = load_model(spark, cfg.path("model"))
    pairs = model.seen.withColumn("confidence", F.lit(1.0))
    with pytest.raises(RecsysError, match="no training interactions"):
        fit_als(pairs.limit(0), ALSConfig(), implicit=True)
    with pytest.raises(RecsysError, match="the test period has no users"):
        evaluate(model.als, pairs, pairs.limit(0), 10)
    with pytest.raises(RecsysError, match=f"no saved model at {tmp_path}/none"):
        JOBS["recommend"](
            spark, dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, model=str(tmp_path / "none")))
        )


def test_random_split_and_explicit_mode_train(spark, trained, tmp_path):
    cfg, _ = trained
    c = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, root=str(tmp_path)))
    c.split = dataclasses.replace(cfg.split, method="random")
    c.tune = dataclasses.replace(cfg.tune, enabled=False)
    c.interactions = dataclasses.replace(cfg.interactions, mode="explicit")  # purchases carry a quantity
    import shutil

    shutil.copytree(cfg.path("events"), c.path("events"))
    out = JOBS["train"](spark, c)
    assert out.split == SplitInfo("random", test_fraction=0.2)
    assert out.quality["users_evaluated"] > 0
    assert not out.tuning


def test_evaluation_without_baseline_gives_the_same_als_metrics(spark, trained):
    cfg, _ = trained
    m = load_model(spark, cfg.path("model"))
    pairs = m.seen.withColumn("confidence", F.lit(1.0))
    train, test = pairs.where(F.col("item_idx") % 3 != 0), pairs.where(F.col("item_idx") % 3 == 0)
    full = evaluate(m.als, train, test, 5).metrics
    als_only = evaluate(m.als, train, test, 5, baseline=False).metrics
    assert als_only == {k: v for k, v in full.items() if not k.startswith("baseline_")}
    assert "baseline_ndcg_at_5" in full and full["users_evaluated"] > 0


def test_als_storage_levels_are_config_keys_checked_by_name(spark, trained):
    from recsys_spark.config import ConfigError, load_config

    cfg, _ = trained
    c = load_config(
        None, ["als.intermediate_storage_level=MEMORY_ONLY", "als.final_storage_level=MEMORY_ONLY", "als.max_iter=2"]
    )
    model = fit_als(
        load_model(spark, cfg.path("model")).seen.withColumn("confidence", F.lit(1.0)), c.als, implicit=True
    )
    assert model.userFactors.count() > 0
    with pytest.raises(ConfigError, match=r"als.final_storage_level: expected one of \[.*'MEMORY_ONLY'.*\], got 'RAM'"):
        load_config(None, ["als.final_storage_level=RAM"])


def test_train_if_changed_skips_when_no_event_arrived(spark, trained):
    """The shared model was fitted on the shared events: train.if_changed keeps it, says so, and
    writes nothing (the doctests of model.fitted_on cover a count or newest event that moved)."""
    cfg, _ = trained
    saved = Path(cfg.path("model")) / "config.yaml"
    before = saved.read_text()
    c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, if_changed=True))
    out = JOBS["train"](spark, c)
    events = read_table(spark, cfg.path("events"))
    newest = events.agg(F.max("event_ts")).first()[0].replace(tzinfo=dt.UTC).isoformat()  # TZ=UTC in tests
    assert isinstance(out, TrainSkipped) and (out.events, out.data_until) == (events.count(), newest)
    assert out.lines() == [
        f"train skipped (train.if_changed): the model at {cfg.path('model')} was fitted on these "
        f"{events.count():,} events (newest {newest}); no event arrived since"
    ]
    assert saved.read_text() == before and yaml.safe_load(before)["data_until"] == newest


def test_train_if_changed_refits_when_the_rules_saved_for_serving_moved(spark, trained, tmp_path):
    """The model saves recommend's item rules and exclude_seen for the pyfunc: a change of either
    (a new candidate table here) is a change, though the events and fit settings are the same."""
    cfg, _ = trained
    events = read_table(spark, cfg.path("events"))
    n, newest_us = events.agg(F.count("*"), F.max(F.unix_micros("event_ts"))).first()
    args = (utc_iso(newest_us), n, fit_settings(tracking.redact_nested(cfg.to_dict())))
    assert unchanged_since_fit(spark, cfg, *args)
    (tmp_path / "shelf.csv").write_text("item_id\ni000001\n")
    shelf = dataclasses.replace(
        cfg, recommend=dataclasses.replace(cfg.recommend, candidates=str(tmp_path / "shelf.csv"))
    )
    typed = dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, exclude_seen=["purchase"]))
    assert not unchanged_since_fit(spark, shelf, *args) and not unchanged_since_fit(spark, typed, *args)
