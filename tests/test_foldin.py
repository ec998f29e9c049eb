"""Fold-in: a user's ALS factors from their history with the item factors fixed, and the recommend
job serving users with events newer than the model from their whole current history."""

import dataclasses
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.config import ALSConfig
from recsys_spark.errors import RecsysError
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.mlops.serving import Recommender
from recsys_spark.recs.foldin import check_unconstrained, fold_in, fresh_histories
from recsys_spark.recs.kernels import Solver
from recsys_spark.recs.model import fit_als, load_model
from recsys_spark.recs.topn import ItemMatrix

FACTORS = "id int, features array<float>"


def relative_gaps(spark_factors, folded) -> dict[int, float]:
    """|folded - Spark's| / |Spark's| per user id, over the users of both (which must be the same)."""
    theirs = {r.id: np.array(r.features, np.float64) for r in spark_factors.collect()}
    ours = {r.id: np.array(r.features, np.float64) for r in folded.collect()}
    assert set(ours) == set(theirs)
    return {u: float(np.linalg.norm(ours[u] - theirs[u]) / np.linalg.norm(theirs[u])) for u in theirs}


@pytest.mark.parametrize("implicit", [True, False])
def test_folding_in_training_users_gives_back_a_spark_fits_factors(spark, implicit):
    rng = np.random.default_rng(3)
    rows = [(u, int(i), float(rng.integers(1, 6))) for u in range(60) for i in rng.choice(40, 8, replace=False)]
    pairs = spark.createDataFrame(rows, "user_idx int, item_idx int, confidence float")
    model = fit_als(pairs, ALSConfig(rank=6, reg_param=0.1, alpha=2.0, max_iter=8), implicit)
    history = pairs.withColumnRenamed("confidence", "weight")
    gaps = relative_gaps(
        model.userFactors, fold_in(ItemMatrix.of(model.itemFactors), history, Solver(implicit, 2.0, 0.1))
    )
    assert len(gaps) == 60 and max(gaps.values()) < 1e-5, max(gaps.values())


def test_fold_in_by_hand(spark):
    # Explicit, no regularisation, items a=(1,0), b=(0,1): A = sum y y' = I and b = 2a + 1b, so a
    # user who rated a 2 and b 1 gets x = (2, 1). User 8's only pair was left out of the fit (null
    # weight) and user 9 rated only an item without factors: neither gets a row.
    items = ItemMatrix.of(spark.createDataFrame([(0, [1.0, 0.0]), (1, [0.0, 1.0])], FACTORS))
    history = spark.createDataFrame(
        [(7, 0, 2.0), (7, 1, 1.0), (8, 0, None), (9, 5, 3.0)], "user_idx int, item_idx int, weight float"
    )
    got = fold_in(items, history, Solver(implicit=False, alpha=0.0, reg_param=0.0))
    assert_df_equality(got, spark.createDataFrame([(7, [2.0, 1.0])], FACTORS), ignore_nullable=True)
    # Implicit, by hand too: Y'Y = I, c = 1 + alpha r and A = I + sum alpha r y y' + reg n I. With
    # alpha 1, reg 0.5 and the same ratings: A = diag(1 + 2 + 1, 1 + 1 + 1), b = (3, 2): x = (3/4, 2/3).
    got = fold_in(items, history.where("user_idx = 7"), Solver(implicit=True, alpha=1.0, reg_param=0.5))
    assert np.allclose(got.first().features, [0.75, 2 / 3], rtol=1e-6)


def test_fold_in_refuses_a_nonnegative_model():
    with pytest.raises(RecsysError, match="als.nonnegative=true: retrain with als.nonnegative=false"):
        check_unconstrained({"als": {"nonnegative": True}})
    check_unconstrained({"als": {"nonnegative": False}})


def test_fresh_histories_weight_as_the_fit_did(spark, trained):
    """Treat the last week as new: those users' fresh histories are the model's own seen pairs
    (refit on all, same decay date), and folding them in gives back the model's factors for them."""
    cfg, _ = trained
    model = load_model(spark, cfg.path(names.MODEL))
    events = read_table(spark, cfg.path(names.EVENTS))
    last = events.agg(F.max("event_ts")).first()[0]
    model.config["data_until"] = (last - dt.timedelta(days=7)).replace(tzinfo=dt.UTC).isoformat()  # TZ=UTC in tests
    fresh = fresh_histories(model, events).join(model.users, "user_id").cache()
    users = fresh.select("user_idx").distinct()
    assert 0 < users.count() < model.users.count()
    assert_df_equality(
        fresh.select("user_idx", "item_idx", "weight"),
        model.seen.join(users, "user_idx"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    solver = Solver(True, model.config["chosen"]["alpha"], model.config["chosen"]["reg_param"])
    folded = fold_in(ItemMatrix.of(model.als.itemFactors), fresh.select("user_idx", "item_idx", "weight"), solver)
    gaps = relative_gaps(model.als.userFactors.join(users.withColumnRenamed("user_idx", "id"), "id"), folded)
    assert max(gaps.values()) < 1e-5, max(gaps.values())
    fresh.unpersist()
    del model.config["data_until"]
    with pytest.raises(RecsysError, match="retrain it with `recsys-spark train`, or recommend without --fold-in"):
        fresh_histories(model, events)


def test_recommend_fold_in_serves_new_and_returning_users_from_their_newest_history(spark, trained, tmp_path):
    cfg, _ = trained
    model = load_model(spark, cfg.path(names.MODEL))
    events = read_table(spark, cfg.path(names.EVENTS))
    last = events.agg(F.max("event_ts")).first()[0]
    top = [r.item_id for r in model.popular.join(model.items, "item_idx").orderBy(F.desc("popularity")).collect()]
    new_items = top[:3]  # a brand-new user's first views (weight 1); u0000001 comes back for one more
    theirs = {r.item_id for r in events.where("user_id = 'u0000001'").select("item_id").distinct().collect()}
    more = next(i for i in top if i not in theirs)
    later = [("newbie", item, "view", last + dt.timedelta(hours=h + 1), None) for h, item in enumerate(new_items)]
    later.append(("u0000001", more, "purchase", last + dt.timedelta(hours=5), None))
    added = spark.createDataFrame(
        later, "user_id string, item_id string, event_type string, event_ts timestamp, value double"
    )
    added = added.withColumn(names.EVENT_DATE, F.to_date("event_ts")).withColumn(names.RAW_DATE, F.to_date("event_ts"))
    c = dataclasses.replace(
        cfg,
        output=dataclasses.replace(cfg.output, root=str(tmp_path / "out")),
        recommend=dataclasses.replace(cfg.recommend, model=cfg.path(names.MODEL), fold_in=True),
    )
    write_table(events.unionByName(added.select(*events.columns)), c.path(names.EVENTS), names.EVENT_DATE)
    out = JOBS["recommend"](spark, c, run_id="fold")
    recs = read_table(spark, c.path(names.RECOMMENDATIONS))
    by_user = {s: recs.where(F.col("user_id") == s) for s in ("newbie", "u0000001")}
    # Both are served from their whole current history: a full list, none of it already seen, each
    # row explained by items of that history.
    for user, history in (("newbie", set(new_items)), ("u0000001", theirs | {more})):
        rows = by_user[user].collect()
        assert len(rows) == 5 and {r.source for r in rows} == {"als_fold_in"}
        assert not {r.item_id for r in rows} & history
        reasons = {b.item_id for r in rows for b in r.because}
        assert reasons and reasons <= history and all(r.why.startswith("because of ") for r in rows)
    assert more in {b.item_id for r in by_user["u0000001"].collect() for b in r.because}
    # Everyone else keeps the model's lists; the new user is a served user with an arm.
    assert out.rows_by_source == {"als": recs.count() - 10, "als_fold_in": 10}
    assert read_table(spark, c.path(names.ASSIGNMENTS)).where("user_id = 'newbie'").count() == 1
    # The served model, without Spark, gives the new user the same list from the same history in
    # the request (each entry one event of weight 1, a view's weight).
    served = Recommender()
    served.load(Path(cfg.path(names.MODEL)))
    got = served.predict(None, pd.DataFrame({"user_id": ["newbie"], "history": [new_items]}))
    expected = by_user["newbie"].orderBy("rank").collect()
    assert [(r.rank, r.item_id, r.source, [b["item_id"] for b in r.because]) for r in got.itertuples()] == [
        (r.rank, r.item_id, r.source, [b.item_id for b in r.because]) for r in expected
    ]
    assert got.score.tolist() == pytest.approx([r.score for r in expected], rel=1e-5)
