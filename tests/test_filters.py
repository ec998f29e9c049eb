"""recommend's filters and cap (recs/filters.py): the kernel on a hand-built catalogue, then the job."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import ConfigError, load_config
from recsys_spark.errors import RecsysError
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.mlops.serving import Recommender
from recsys_spark.recs.ease import ease_top_n
from recsys_spark.recs.filters import item_rules, rules_frame, with_typed_flag
from recsys_spark.recs.kernels import ListRules, capped_top_k
from recsys_spark.recs.model import load_model, save_model
from recsys_spark.recs.topn import top_n

from support import copied_root

# Six items scored 6..1 for every user (rank 1: user factor [1], item factor [score]).
# Values of the capped column: items 0, 1, 2 are "a", 3 and 4 "b", 5 has none.
SCORES = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
GROUPS = np.array([0, 0, 0, 1, 1, -1])


@pytest.fixture(scope="module")
def catalogue(spark):
    users = spark.createDataFrame([(0, [1.0]), (1, [1.0])], "id int, features array<float>")
    items = spark.createDataFrame([(i, [s]) for i, s in enumerate(SCORES)], "id int, features array<float>")
    seen = spark.createDataFrame([(0, 1)], "user_idx int, item_idx int")  # user 0 saw item 1
    return users, items, seen


def lists(spark, rows):
    return spark.createDataFrame(
        [(u, r, i, SCORES[i]) for u, items in rows.items() for r, i in enumerate(items, 1)],
        "user_idx int, rank int, item_idx int, score float",
    )


def check(spark, catalogue, expected, n=3, mask=None, rules=None):
    users, items, seen = catalogue
    got = top_n(users, items, seen, n, mask=mask, rules=rules)
    assert_df_equality(got, lists(spark, expected), ignore_row_order=True, ignore_nullable=True)


def test_a_filter_that_removes_the_top_items_still_yields_n(spark, catalogue):
    allowed = np.array([False, True, True, True, True, True])  # item 0, everyone's best, is out of stock
    check(spark, catalogue, {0: [2, 3, 4], 1: [1, 2, 3]}, rules=ListRules(allowed=allowed))


def test_candidates_restrict_lists_to_the_set(spark, catalogue):
    allowed = np.array([False, False, False, True, True, True])
    check(spark, catalogue, {0: [3, 4, 5], 1: [3, 4, 5]}, n=5, rules=ListRules(allowed=allowed))  # 3 remain, 3 given


def test_a_dismissed_item_never_reappears_and_seen_items_can_be_listed(spark, catalogue):
    dismissed = spark.createDataFrame([(1, 0)], "user_idx int, item_idx int")  # user 1 dismissed item 0
    check(spark, catalogue, {0: [0, 1, 2], 1: [1, 2, 3]}, mask=dismissed)  # the mask replaces seen: 1 is listed again


def test_the_cap_keeps_the_best_items_within_k_per_value(spark, catalogue):
    # At most 1 of a value: item 0 (a), then 3 (b), then 5 (no value: uncapped); user 0's seen item 1 still masked.
    check(spark, catalogue, {0: [0, 3, 5], 1: [0, 3, 5]}, rules=ListRules(groups=GROUPS, cap=1))
    # At most 2, item 0 filtered out: user 0 (saw 1) gets 2, 3, 4; user 1 gets 1, 2 (a is full), 3.
    rules = ListRules(allowed=np.array([False, True, True, True, True, True]), groups=GROUPS, cap=2)
    check(spark, catalogue, {0: [2, 3, 4], 1: [1, 2, 3]}, rules=rules)


def walk(scores, ids, k, codes, cap):
    """The cap by its definition: down the scores (ties by item id), skipping an item whose value is full."""
    out = []
    for row in scores:
        taken, count = [], {}
        for j in sorted(np.flatnonzero(np.isfinite(row)), key=lambda j: (-row[j], ids[j])):
            if codes[j] < 0 or count.get(codes[j], 0) < cap:
                taken.append(j)
                count[codes[j]] = count.get(codes[j], 0) + 1
            if len(taken) == k:
                break
        out.append(taken)
    return out


def test_the_capped_kernel_is_the_walk_down_the_scores():
    rng = np.random.default_rng(0)
    for _ in range(200):  # ties, masked items, few and many values, rows whose best 4k run out
        m, n = rng.integers(1, 20), rng.integers(1, 60)
        k, cap = int(min(rng.integers(1, 12), n)), int(rng.integers(1, 4))
        scores = rng.integers(0, 8, (m, n)).astype(np.float32)
        scores[rng.random((m, n)) < 0.2] = -np.inf
        ids, codes = rng.permutation(n), rng.integers(-1, rng.integers(1, 6), n)
        cols, top = capped_top_k(scores, ids, k, codes, cap)
        assert [list(c[np.isfinite(t)]) for c, t in zip(cols, top, strict=True)] == walk(scores, ids, k, codes, cap)


def test_ease_lists_obey_the_same_mask_and_rules(spark):
    # B's row for item 0 scores items 1..3 as 0.9, 0.5, 0.2; user 7 holds item 0 and dismissed item 1.
    b = np.zeros((4, 4), np.float32)
    b[0, 1:] = [0.9, 0.5, 0.2]
    history = spark.createDataFrame([(7, 0)], "user_idx int, item_idx int")
    dismissed = history.unionByName(spark.createDataFrame([(7, 1)], "user_idx int, item_idx int"))
    rules = ListRules(groups=np.array([-1, 0, 0, 0]), cap=1)  # items 1..3 share a value: one of them at most
    got = ease_top_n(history, history.select("user_idx"), np.arange(4), b, 2, mask=dismissed, rules=rules)
    expected = spark.createDataFrame([(7, 1, 2, 0.5)], "user_idx int, rank int, item_idx int, score float")
    assert_df_equality(got, expected, ignore_nullable=True)  # 0 held, 1 dismissed, 3 over the cap: one item left


def test_config_refuses_what_filters_cannot_do(tmp_path):
    with pytest.raises(ConfigError, match="items.path is not set"):
        load_config(None, ["recommend.item_filter=in_stock"])
    with pytest.raises(ConfigError, match=r"one column at a time"):
        load_config(None, ["items.path=x.csv", "recommend.max_per_value={a: 1, b: 2}"])
    with pytest.raises(ConfigError, match=r"recommend.max_per_value.category must be a positive integer, got 0"):
        load_config(None, ["items.path=x.csv", "recommend.max_per_value={category: 0}"])
    with pytest.raises(ConfigError, match=r"unknown event type\(s\) \['like'\]"):
        load_config(None, ["recommend.exclude_seen=[like]"])


@pytest.fixture(scope="module")
def catalogue_files(spark, trained, tmp_path_factory):
    """An item table for the trained model's items (category by item number, every third out of
    stock), and the model's items in popularity order."""
    base = tmp_path_factory.mktemp("filters")
    cfg = copied_root(trained[0], base / "out")  # these runs write lists other tests must not read
    model = load_model(spark, cfg.path("model"))
    items = [r.item_id for r in model.items.orderBy("item_id").collect()]
    table = base / "items.csv"
    table.write_text(
        "item_id,category,in_stock\n"
        + "".join(f"{item},c{i % 3},{'false' if i % 3 == 0 else 'true'}\n" for i, item in enumerate(items))
    )
    return cfg, base, {item: (f"c{i % 3}", i % 3 != 0) for i, item in enumerate(items)}


def served(spark, cfg, run_id, **recommend):
    c = dataclasses.replace(cfg, recommend=dataclasses.replace(cfg.recommend, **recommend))
    JOBS["recommend"](spark, c, run_id=run_id)
    return read_table(spark, cfg.path("recommendations")).where(F.col("run_id") == run_id)


def test_recommend_applies_the_filter_exclusions_and_candidates(spark, catalogue_files):
    cfg, base, attrs = catalogue_files
    cfg = dataclasses.replace(cfg, items=dataclasses.replace(cfg.items, path=str(base / "items.csv")))
    everyone = served(spark, cfg, "f0")
    first = everyone.where("rank = 1").select("user_id", "item_id").limit(2).collect()
    (base / "dismissed.csv").write_text("user_id,item_id\n" + "".join(f"{r.user_id},{r.item_id}\n" for r in first))
    recs = served(
        spark, cfg, "f1", item_filter="in_stock = 'true' AND category != 'c2'", exclude=str(base / "dismissed.csv")
    )
    rows = recs.select("user_id", "item_id", "rank").collect()
    assert rows and all(attrs[r.item_id] == ("c1", True) for r in rows)  # only in-stock c1 items remain
    assert not {(r.user_id, r.item_id) for r in first} & {(r.user_id, r.item_id) for r in rows}
    per_user = recs.groupBy("user_id").agg(F.count("*").alias("n"), F.max("rank").alias("hi"))
    assert per_user.where((F.col("n") != 5) | (F.col("hi") != 5)).count() == 0  # n items each, ranks 1..n
    assert per_user.count() == everyone.select("user_id").distinct().count()
    shelf = sorted(attrs)[:7]
    (base / "shelf.csv").write_text("item_id\n" + "".join(f"{i}\n" for i in shelf))
    only = served(spark, cfg, "f2", candidates=str(base / "shelf.csv"), users=["u0000001", "nobody"])
    assert {r.item_id for r in only.collect()} <= set(shelf)
    assert only.where("user_id = 'nobody'").count() == 5  # the unknown user's popular list is restricted too


def test_recommend_caps_a_category_per_list(spark, catalogue_files):
    cfg, base, attrs = catalogue_files
    cfg = dataclasses.replace(cfg, items=dataclasses.replace(cfg.items, path=str(base / "items.csv")))
    recs = served(spark, cfg, "f3", max_per_value={"category": 2})
    counts: dict[tuple[str, str], int] = {}
    for r in recs.select("user_id", "item_id").collect():
        key = (r.user_id, attrs[r.item_id][0])
        counts[key] = counts.get(key, 0) + 1
    assert counts and max(counts.values()) == 2  # never 3 of a category in a list of 5
    assert recs.groupBy("user_id").count().where("count != 5").count() == 0


def test_an_unsafe_item_filter_is_refused_before_it_runs(spark, catalogue_files):
    cfg, base, _ = catalogue_files
    cfg = dataclasses.replace(cfg, items=dataclasses.replace(cfg.items, path=str(base / "items.csv")))
    with pytest.raises(RecsysError, match=r"recommend.item_filter: a subquery is not allowed"):
        served(spark, cfg, "f4", item_filter="(SELECT count(*) FROM text.`/etc/passwd`) > 0")


def test_exclude_seen_by_event_type_lists_viewed_items_again_in_batch_and_serving(spark, catalogue_files, tmp_path):
    cfg, _, _ = catalogue_files
    users = ["u0000001", "u0000002", "u0000003", "u0000004"]
    recs = served(spark, cfg, "f5", exclude_seen=["purchase"])
    events = read_table(spark, cfg.path("events"))
    bought = events.where("event_type = 'purchase'").select("user_id", "item_id").distinct()
    assert recs.join(bought, ["user_id", "item_id"]).count() == 0
    assert recs.join(events.select("user_id", "item_id").distinct(), ["user_id", "item_id"]).count() > 0
    # The model as train saves it under this setting: its seen pairs flag the purchased ones.
    model = load_model(spark, cfg.path("model"))
    flagged = with_typed_flag(model.seen, events, model.users, model.items, ["purchase"])
    typed = {**model.config, "recommend": {**model.config["recommend"], "exclude_seen": ["purchase"]}}
    save_model(dataclasses.replace(model, seen=flagged, config=typed), str(tmp_path / "model"))
    pyfunc = Recommender()
    pyfunc.load(tmp_path / "model")
    answer = spark.createDataFrame(pyfunc.predict(None, pd.DataFrame({"user_id": users}))[["user_id", "item_id"]])
    table = recs.where(F.col("user_id").isin(users)).select("user_id", "item_id")
    assert answer.join(events.select("user_id", "item_id"), ["user_id", "item_id"]).count() > 0  # seen, listed
    assert_df_equality(answer, table, ignore_row_order=True, ignore_nullable=True)

    def lists(seen, exclude_seen, request):
        """The pyfunc's (user_id, item_id) for `request`, from the model saved with `seen` and `exclude_seen`."""
        folder = tmp_path / f"model-{len(list(tmp_path.iterdir()))}"
        config = {**model.config, "recommend": {**model.config["recommend"], "exclude_seen": exclude_seen}}
        save_model(dataclasses.replace(model, seen=seen, config=config), str(folder))
        served_by = Recommender()
        served_by.load(folder)
        return sorted(map(tuple, served_by.predict(None, pd.DataFrame(request))[["user_id", "item_id"]].to_numpy()))

    # A model saved before train flagged typed pairs masks every seen pair, as it did then.
    assert lists(model.seen, ["purchase"], {"user_id": users}) == lists(model.seen, "all", {"user_id": users})
    # A request's history has no event types: masked unless exclude_seen is none (its items come back).
    history = {
        "user_id": ["newbie"],
        "history": [sorted(r.item_id for r in recs.select("item_id").distinct().collect())[:4]],
    }
    listed = {i for _, i in lists(model.seen, "none", history)}
    assert listed & set(history["history"][0]) and not {i for _, i in lists(flagged, ["purchase"], history)} & set(
        history["history"][0]
    )


def test_the_served_model_answers_like_the_batch_table_under_the_same_filters(spark, catalogue_files, tmp_path):
    cfg, base, attrs = catalogue_files
    users = ["u0000001", "u0000002", "u0000003", "nobody"]
    shelf = sorted(attrs)[::2]  # every other item
    (base / "even.csv").write_text("item_id\n" + "".join(f"{i}\n" for i in shelf))
    first = served(spark, cfg, "f6", users=users).where("rank = 1").collect()  # each user's best, unfiltered
    (base / "theirs.csv").write_text("user_id,item_id\n" + "".join(f"{r.user_id},{r.item_id}\n" for r in first))
    c = dataclasses.replace(
        cfg,
        items=dataclasses.replace(cfg.items, path=str(base / "items.csv")),
        recommend=dataclasses.replace(
            cfg.recommend,
            item_filter="in_stock = 'true'",
            max_per_value={"category": 3},  # two categories are in stock: 6 items at most, 5 asked for
            model=str(tmp_path / "model"),
        ),
    )
    # The model as train saves it under these settings: its item rules beside it.
    model = load_model(spark, cfg.path("model"))
    save_model(dataclasses.replace(model, rules=rules_frame(spark, item_rules(spark, c, model.items))), c.model_path)
    batch = served(spark, c, "f7", users=users, exclude=str(base / "theirs.csv"), candidates=str(base / "even.csv"))
    pyfunc = Recommender()
    pyfunc.load(tmp_path / "model")
    dismissed = {r.user_id: [r.item_id] for r in first}
    request = pd.DataFrame(
        {"user_id": users, "exclude": [dismissed.get(u) for u in users], "candidates": [shelf] * len(users)}
    )
    answer = spark.createDataFrame(pyfunc.predict(None, request)[["user_id", "rank", "item_id", "score", "source"]])
    table = batch.select("user_id", F.col("rank").cast("long"), "item_id", "score", "source")
    assert table.count() == 20 and table.where(F.col("item_id").isin(list(dismissed.values())[0])).count() == 0
    assert_approx_df_equality(answer, table, 1e-5, ignore_row_order=True, ignore_nullable=True)


def test_train_evaluates_under_the_rules_and_saves_them_for_the_pyfunc(spark, catalogue_files):
    cfg, base, attrs = catalogue_files
    c = dataclasses.replace(
        cfg,
        items=dataclasses.replace(cfg.items, path=str(base / "items.csv")),
        recommend=dataclasses.replace(cfg.recommend, item_filter="in_stock = 'sold out'", exclude_seen=["purchase"]),
        tracking=dataclasses.replace(cfg.tracking, enabled=False),
        model=dataclasses.replace(cfg.model, family="ease"),  # both families are evaluated; EASE serves
    )
    out = JOBS["train"](spark, c)
    k = c.train.k
    # Nothing may be listed: the test users' lists under the rules are empty, so every figure is 0.
    assert out.ruled[f"rules_ndcg_at_{k}"] == out.ruled["rules_catalog_coverage"] == 0.0
    assert out.ruled[f"ease_rules_ndcg_at_{k}"] == out.ruled["ease_rules_catalog_coverage"] == 0.0
    assert out.quality[f"ndcg_at_{k}"] > 0 and out.ease[f"ease_ndcg_at_{k}"] > 0
    lines = out.lines()
    assert [
        f for f in ("ALS", "EASE") if any(f"under recommend's item rules ({f}, same users)" in x for x in lines)
    ] == [
        "ALS",
        "EASE",
    ]
    saved = read_table(spark, c.path("model") + "/rules")
    assert saved.count() == len(attrs) and saved.where("allowed").count() == 0  # no item passes the filter
    model = load_model(spark, c.path("model"))  # its seen pairs flag those the pyfunc masks: purchased ones
    seen = model.seen.join(model.users, "user_idx").join(model.items, "item_idx")
    bought = read_table(spark, c.path("events")).where("event_type = 'purchase'").select("user_id", "item_id")
    expected = seen.join(bought.distinct().withColumn("bought", F.lit(True)), ["user_id", "item_id"], "left")
    assert expected.where("masked").count() > 0 and expected.where("NOT masked").count() > 0
    assert expected.where(F.col("masked") != F.coalesce("bought", F.lit(False))).count() == 0
    pyfunc = Recommender()
    pyfunc.load(Path(c.path("model")))
    assert pyfunc.predict(None, pd.DataFrame({"user_id": ["u0000001", "nobody"]})).empty
