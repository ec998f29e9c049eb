import numpy as np
import pytest
from chispa import assert_approx_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import ALSConfig, InteractionsConfig
from recsys_spark.events.synthetic import generate_events
from recsys_spark.recs.interactions import build_id_map, build_interactions, index_interactions
from recsys_spark.recs.kernels import _top_k_of, block_rows, chunk_width, top_k_rows
from recsys_spark.recs.model import fit_als
from recsys_spark.recs.topn import popularity, top_n, top_n_naive, top_n_popular

from support import small_config


@pytest.fixture(scope="module")
def fitted(spark, tmp_path_factory):
    cfg = small_config(str(tmp_path_factory.mktemp("topn")))
    events = generate_events(spark, cfg.generate).where(F.col("user_id").isNotNull() & (F.trim("item_id") != ""))
    pairs = build_interactions(
        events.where(F.col("event_type") != "bogus"), InteractionsConfig(), cfg.events.weights, None
    )
    users, items = build_id_map(pairs, "user_id", "user_idx"), build_id_map(pairs, "item_id", "item_idx")
    inter = index_interactions(pairs, users, items).cache()
    model = fit_als(inter, ALSConfig(rank=8, max_iter=5), implicit=True)
    return model, inter


@pytest.mark.parametrize("block", [None, 7])  # one block per Arrow batch, and many blocks (seen pairs sliced per block)
def test_fast_top_n_equals_the_naive_spark_way(fitted, block):
    model, inter = fitted
    seen = inter.select("user_idx", "item_idx")
    fast = top_n(model.userFactors, model.itemFactors, seen, 10, block=block)
    naive = top_n_naive(model, seen, 10)
    assert fast.count() == naive.count() > 0
    assert_approx_df_equality(fast, naive, 1e-4, ignore_row_order=True, ignore_nullable=True)


def test_seen_items_are_never_recommended(fitted):
    model, inter = fitted
    seen = inter.select("user_idx", "item_idx")
    recs = top_n(model.userFactors, model.itemFactors, seen, 25)
    assert recs.join(seen, ["user_idx", "item_idx"]).count() == 0
    ranks = recs.groupBy("user_idx").agg(F.min("rank").alias("lo"), F.max("rank").alias("hi"), F.count("*").alias("n"))
    assert ranks.where((F.col("lo") != 1) | (F.col("hi") != F.col("n"))).count() == 0


def test_block_rows_keep_a_block_near_cache_size():
    assert [block_rows(n) for n in (0, 120, 3_000, 10_000, 50_000, 1_000_000)] == [1024, 1024, 1000, 300, 60, 32]


def test_chunked_top_k_keeps_ties_across_chunks_by_item_id():
    # 64 items in 16 chunks of 4. Row 0: 0.9 at column 5, then 0.7 in three chunks (columns 10, 40,
    # 63); item ids run backwards, so of the tied 0.7s column 63 (item 0) is kept. Three chunk
    # maxima tie at the 2nd largest: the row is decided on all its columns. Row 1: no tie, chunks.
    assert chunk_width(64) == 4
    scores = np.zeros((2, 64), np.float32)
    scores[0, [5, 10, 40, 63]] = [0.9, 0.7, 0.7, 0.7]
    scores[1, [5, 40, 41]] = [0.9, 0.8, 0.1]
    cols, top = top_k_rows(scores, np.arange(64)[::-1], 2)
    assert cols.tolist() == [[5, 63], [5, 40]]
    assert top.ravel().tolist() == pytest.approx([0.9, 0.7, 0.9, 0.8])


def test_chunked_top_k_equals_the_full_partition():
    # Random rows with ties (rounded scores) and masked (-inf) items, up to whole masked rows and
    # fewer finite scores than k: the chunked first pass keeps exactly what a partition of the
    # whole row keeps.
    rng = np.random.default_rng(0)
    chunked = 0
    for case in range(200):
        m, n, k = int(rng.integers(1, 30)), int(rng.integers(50, 4000)), int(rng.integers(1, 12))
        scores = np.round(rng.standard_normal((m, n)), 1 if case % 2 else 6).astype(np.float32)
        scores[rng.random((m, n)) < (0.9 if case % 3 == 0 else 0.05)] = -np.inf
        scores[: m // 4] = -np.inf
        if case % 5 == 0:  # NaN inside the chunks and after the last one
            scores[rng.random((m, n)) < 0.01] = np.nan
            scores[:, -1] = np.nan
        if case % 7 == 0:
            scores = np.asfortranarray(scores.astype(np.float64))  # float64, not C-contiguous
        ids = rng.permutation(2 * n)[:n]
        chunked += n // chunk_width(n) >= 4 * k
        got, want = top_k_rows(scores, ids, k), _top_k_of(scores, None, ids, k)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (case, m, n, k)
    assert chunked > 150  # most cases took the chunked path
    none = top_k_rows(np.zeros((0, 3000), np.float32), np.arange(3000), 20)  # cold items: no new item
    assert none[0].shape == none[1].shape == (0, 20)


def test_popularity_baseline_ranks_by_distinct_users_excluding_seen(spark):
    inter = spark.createDataFrame(
        [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (3, 3), (0, 3)], "user_idx int, item_idx int"
    ).withColumn("confidence", F.lit(1.0))
    users = spark.createDataFrame([(0,), (3,)], "user_idx int")
    got = top_n_popular(users, popularity(inter), inter.select("user_idx", "item_idx"), 2)
    # popularity: item 1 -> 3 users, 2 -> 2, 3 -> 2 (tie broken by item id). User 0 saw 1, 2, 3.
    expected = spark.createDataFrame(
        [(3, 1, 1, 3.0), (3, 2, 2, 2.0)], "user_idx int, rank int, item_idx int, score float"
    )
    assert_approx_df_equality(got, expected, 1e-6, ignore_row_order=True, ignore_nullable=True)


def test_ties_at_the_kth_score_keep_the_lowest_item_ids(spark):
    # 600 items, every score equal except two: top-4 is item 7 (2.0), then the lowest ids among the
    # 1.0 ties not seen by the user (0 is seen): 1, 2, 3. And with fewer unseen items than n, only those.
    items = spark.createDataFrame(
        [(i, [2.0 if i == 7 else 0.5 if i == 9 else 1.0]) for i in range(600)], "id int, features array<float>"
    )
    users = spark.createDataFrame([(0, [1.0]), (1, [1.0])], "id int, features array<float>")
    seen = spark.createDataFrame(
        [(0, 0), *[(1, i) for i in range(600) if i not in (9, 42)]], "user_idx int, item_idx int"
    )
    got = {(r.user_idx, r["rank"]): (r.item_idx, r.score) for r in top_n(users, items, seen, 4).collect()}
    assert got == {
        (0, 1): (7, 2.0),
        (0, 2): (1, 1.0),
        (0, 3): (2, 1.0),
        (0, 4): (3, 1.0),
        (1, 1): (42, 1.0),
        (1, 2): (9, 0.5),
    }
