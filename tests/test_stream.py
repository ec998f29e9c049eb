"""`recsys-spark stream`: raw files as they land, exactly once, into the tables a batch ingest
writes; a replayed micro-batch changes nothing; the users of a batch get fresh lists."""

import dataclasses
import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark import names
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS
from recsys_spark.results import StreamResult

from support import small_config


def rooted(cfg, root: Path, **stream):
    return dataclasses.replace(
        cfg,
        output=dataclasses.replace(cfg.output, root=str(root)),
        input=dataclasses.replace(cfg.input, path=str(root.parent / "landing")),
        stream=dataclasses.replace(cfg.stream, once=True, **stream),
    )


def land(src: Path, dst: Path, days: list[str]) -> None:
    for day in days:
        shutil.copytree(src / f"event_date={day}", dst / f"event_date={day}")


def table(spark, path):
    return read_table(spark, path).orderBy(*sorted(read_table(spark, path).columns))


@pytest.fixture(scope="module")
def raw(spark, tmp_path_factory):
    """The generator's tiny raw data (with its deliberately broken rows), by date partition."""
    cfg = small_config(str(tmp_path_factory.mktemp("gen")))
    JOBS["generate"](spark, cfg)
    folder = Path(cfg.input_path)
    return cfg, folder, sorted(p.name.split("=", 1)[1] for p in folder.glob("event_date=*"))


def test_files_landing_between_batches_give_the_tables_of_one_batch_ingest(spark, raw, tmp_path):
    cfg, folder, days = raw
    landing = tmp_path / "landing"
    streamed = rooted(cfg, tmp_path / "streamed", max_files_per_batch=10)
    land(folder, landing, days[:20])
    first = JOBS["stream"](spark, streamed)
    assert isinstance(first, StreamResult) and first.batches == 2 and first.replayed == 0
    land(folder, landing, days[20:])  # files land while the stream is stopped: the next run takes them
    sent = next((landing / f"event_date={days[0]}").glob("*.parquet"))
    shutil.copy(sent, sent.with_name("zz-resent.parquet"))  # a file of the first batch delivered again
    second = JOBS["stream"](spark, streamed)
    assert second.batches >= 4 and second.users_refreshed == 0  # no model: ingest only
    batch = rooted(cfg, tmp_path / "batch")
    ingested = JOBS["ingest"](spark, batch)
    # Every raw row once: the batches' counts add up to one ingest's, and the tables are equal.
    assert (
        first.rows_read + second.rows_read,
        first.rows_clean + second.rows_clean,
        first.rows_quarantined + second.rows_quarantined,
    ) == (ingested.rows_read, ingested.rows_clean, ingested.rows_quarantined)
    # The resent file's rows repeat rows of an earlier batch: duplicates, as one read makes them.
    resent = pd.read_parquet(sent)
    dups = read_table(spark, streamed.path(names.QUARANTINE)).where(F.col("_source").endswith("zz-resent.parquet"))
    quarantined = read_table(spark, streamed.path(names.QUARANTINE))
    original = F.col("_source").endswith(f"event_date={days[0]}/{sent.name}")
    other = quarantined.where(original & (F.col("_reason") != "duplicate")).count()
    assert dups.where("_reason = 'duplicate'").count() == len(resent) - other  # its other bad rows keep their reasons
    for name in (names.EVENTS, names.QUARANTINE):
        assert_df_equality(
            table(spark, streamed.path(name)),
            table(spark, batch.path(name)),
            ignore_row_order=True,
            ignore_nullable=True,
        )
    logged = read_table(spark, streamed.path(names.STREAM_BATCHES))
    assert logged.agg(F.sum("rows_read")).first()[0] == ingested.rows_read
    assert [r.batch_id for r in logged.orderBy("batch_id").collect()] == list(range(first.batches + second.batches))


def test_a_replayed_batch_changes_nothing(spark, raw, tmp_path):
    """A kill after the tables switched in but before Spark recorded the batch: Spark replays it,
    the stream finds its id committed and skips it."""
    cfg, folder, days = raw
    streamed = rooted(cfg, tmp_path / "streamed")
    land(folder, tmp_path / "landing", days[:5])
    JOBS["stream"](spark, streamed)
    before = {name: table(spark, streamed.path(name)).collect() for name in (names.EVENTS, names.STREAM_BATCHES)}
    commits = Path(streamed.path(names.STREAM_CHECKPOINT)) / "commits"
    for done in (commits / "0", commits / ".0.crc"):  # as if killed before Spark's commit of batch 0
        done.unlink(missing_ok=True)
    again = JOBS["stream"](spark, streamed)
    assert (again.replayed, again.batches) == (1, 0)
    assert {name: table(spark, streamed.path(name)).collect() for name in before} == before
    # A reset checkpoint is a new query counting from batch 0 again: not a replay. It reads every
    # file again; the rows already in events are duplicates, the new day's land.
    shutil.rmtree(streamed.path(names.STREAM_CHECKPOINT))
    land(folder, tmp_path / "landing", days[5:7])
    fresh = JOBS["stream"](spark, streamed)
    assert (fresh.replayed, fresh.batches) == (0, 1)
    batch = rooted(cfg, tmp_path / "batch")
    JOBS["ingest"](spark, batch)
    assert_df_equality(
        table(spark, streamed.path(names.EVENTS)), table(spark, batch.path(names.EVENTS)), ignore_row_order=True
    )


def test_a_batch_refreshes_its_users_lists_with_fold_in(spark, trained, tmp_path):
    """A new user's first clicks land as a file: the stream ingests them and serves the user from them."""
    cfg, _ = trained
    model = cfg.path(names.MODEL)
    items = pd.read_parquet(Path(model) / "items")["item_id"].sort_values().tolist()[:3]
    landing = tmp_path / "landing" / "event_date=2026-12-01"
    landing.mkdir(parents=True)
    stamp = dt.datetime(2026, 12, 1, 9)
    pd.DataFrame(
        {
            "user_id": ["newbie"] * 3,
            "item_id": items,
            "event_type": ["click"] * 3,
            "event_ts": [stamp + dt.timedelta(minutes=m) for m in range(3)],
            "value": [None] * 3,
        }
    ).astype({"value": "float64"}).to_parquet(landing / "part-0.parquet", index=False, coerce_timestamps="us")
    streamed = rooted(cfg, tmp_path / "out")
    streamed = dataclasses.replace(streamed, recommend=dataclasses.replace(streamed.recommend, model=model))
    out = JOBS["stream"](spark, streamed)
    assert (out.batches, out.rows_clean, out.users_refreshed) == (1, 3, 1)
    recs = read_table(spark, streamed.path(names.RECOMMENDATIONS)).where("user_id = 'newbie'").collect()
    assert len(recs) == cfg.recommend.n and {r.source for r in recs} == {"als_fold_in"}
    assert not {r.item_id for r in recs} & set(items) and {b.item_id for r in recs for b in r.because} <= set(items)


def test_rows_older_than_the_watermark_are_quarantined_as_late(spark, tmp_path):
    """stream.watermark_hours 24: after a batch whose newest event is day 10 at noon, a row of day 9
    before noon is late (quarantined), one of day 9 after noon merges into its date."""
    cfg = rooted(small_config(str(tmp_path / "out")), tmp_path / "out", watermark_hours=24.0)
    noon = dt.datetime(2026, 3, 10, 12)

    def send(day: str, name: str, users: list[str], stamps: list[dt.datetime]) -> None:
        folder = tmp_path / "landing" / f"event_date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        rows = {"user_id": users, "item_id": ["i1"] * len(users), "event_type": ["click"] * len(users)}
        frame = pd.DataFrame({**rows, "event_ts": stamps, "value": [None] * len(users)}).astype({"value": "float64"})
        frame.to_parquet(folder / name, index=False, coerce_timestamps="us")

    send("2026-03-10", "a.parquet", ["u1", "u2"], [noon - dt.timedelta(hours=1), noon])
    assert JOBS["stream"](spark, cfg).rows_quarantined == 0  # nothing committed before: no bound
    send("2026-03-09", "b.parquet", ["late", "in_time"], [noon - dt.timedelta(hours=25), noon - dt.timedelta(hours=23)])
    out = JOBS["stream"](spark, cfg)
    assert (out.rows_read, out.rows_clean, out.rows_quarantined) == (2, 1, 1)
    quarantined = read_table(spark, cfg.path(names.QUARANTINE)).select("user_id", "_reason").collect()
    assert [(r.user_id, r._reason) for r in quarantined] == [("late", "late")]
    events = read_table(spark, cfg.path(names.EVENTS))
    by_date = {(r.user_id, str(r.event_date)) for r in events.select("user_id", "event_date").collect()}
    assert by_date == {("u1", "2026-03-10"), ("u2", "2026-03-10"), ("in_time", "2026-03-09")}
    newest = read_table(spark, cfg.path(names.STREAM_BATCHES)).orderBy("batch_id").select("max_event_ts").collect()
    assert [r.max_event_ts for r in newest] == [noon, noon - dt.timedelta(hours=23)]  # TZ=UTC in tests
