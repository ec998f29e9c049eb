"""Data safety (issue 13): the same answer in any time zone, guards before any work, and
deterministic ties. Real subprocesses where the process environment is what is tested."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from chispa import assert_approx_df_equality, assert_df_equality

from support import PIPELINE_RUN, cli, failure, listening, scrubbed_env, sets, tiny


@pytest.mark.slow
def test_same_tables_in_any_time_zone(spark, pipeline_run, tmp_path):
    # The suite's run is the UTC one (its process ran with TZ=UTC); the same settings run again under
    # two other process time zones, tracking off.
    roots, split = {"UTC": pipeline_run.base / "out"}, {"UTC": pipeline_run.stages["train"]["split"]}
    for tz in ("Asia/Tokyo", "America/Los_Angeles"):
        root = tmp_path / tz.replace("/", "_")
        args = sets({**PIPELINE_RUN, "output.root": root, "tracking.enabled": "false"})
        out = cli("run", "--summary-json", f"{root}.json", *args, cwd=tmp_path, env={"TZ": tz}, timeout=900)
        assert out.returncode == 0, failure(out)
        roots[tz] = root
        split[tz] = json.loads((tmp_path / f"{root.name}.json").read_text())["stages"]["train"]["split"]
    assert split["Asia/Tokyo"] == split["America/Los_Angeles"] == split["UTC"]

    def read(tz, table):
        return spark.read.parquet(f"{roots[tz]}/{table}")

    for tz in ("Asia/Tokyo", "America/Los_Angeles"):
        for table in ("events", "retention/cohorts", "retention/stickiness", "eval/per_user"):
            assert_df_equality(read(tz, table), read("UTC", table), ignore_row_order=True)

        def recs(t):  # reasons: test_cluster compares them
            return read(t, "recommendations").drop("run_id", "run_date", "model_id", "because", "why")

        assert_approx_df_equality(recs(tz), recs("UTC"), 1e-4, ignore_row_order=True)


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_csv_written_by_python_keeps_quotes_and_newlines_inside_fields(spark, cfg, tmp_path):
    import csv

    from recsys_spark.infra.tables import read_table
    from recsys_spark.jobs.runner import JOBS

    src = tmp_path / "csv"
    src.mkdir()
    with open(src / "events.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["uid", "iid", "kind", "ts", "note"])
        w.writerow(['u"quote', "i1", "view", "2026-01-05 10:00:00", "plain"])
        w.writerow(["u2", "i2", "view", "2026-01-05 11:00:00", "two\nlines, with a comma"])
        w.writerow(["u3", "i3", "view", "2026-01-05 12:00:00", 'say "hi"'])
    cfg.input.path, cfg.input.format = str(src), "csv"
    cfg.input.columns = {"user_id": "uid", "item_id": "iid", "event_type": "kind", "event_ts": "ts"}
    out = JOBS["ingest"](spark, cfg)
    assert (out.rows_read, out.rows_clean, out.rows_quarantined) == (3, 3, 0)
    users = sorted(r.user_id for r in read_table(spark, cfg.path("events")).collect())
    assert users == ['u"quote', "u2", "u3"]


def csv_cfg(cfg, src):
    cfg.input.path, cfg.input.format = str(src), "csv"
    cfg.input.columns = {"user_id": "uid", "item_id": "iid", "event_type": "kind", "event_ts": "ts"}
    return cfg


def test_years_before_min_event_date_are_quarantined_as_too_old(spark, cfg, tmp_path):
    from recsys_spark.infra.tables import read_table
    from recsys_spark.jobs.runner import JOBS

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "e.csv").write_text(
        "uid,iid,kind,ts\nu1,i1,view,1500-01-01 00:00:00\nu2,i1,view,1900-06-01 00:00:00\n"
        "u3,i1,view,1970-01-01 00:00:00\nu4,i1,view,2026-01-05 10:00:00\n"
    )
    out = JOBS["ingest"](spark, csv_cfg(cfg, tmp_path / "csv"))
    assert out.quarantined_by_reason == {"too_old": 2} and out.rows_clean == 2
    # (Spark infers the partition as a date when no row is `unparsed`, pandas reads the string.)
    q = sorted(
        (r.uid, r._reason, str(r.parsed_event_date)) for r in read_table(spark, cfg.path("quarantine")).collect()
    )
    assert q == [("u1", "too_old", "1500-01-01"), ("u2", "too_old", "1900-06-01")]


def test_a_struct_id_column_is_refused_naming_it(spark, cfg, tmp_path):
    from recsys_spark.errors import RecsysError
    from recsys_spark.jobs.runner import JOBS

    df = spark.createDataFrame(
        [((21, "x21"), "i1", "view", "2026-01-05 10:00:00")],
        "user_id struct<n:int,s:string>, item_id string, event_type string, event_ts string",
    )
    df.write.parquet(str(tmp_path / "structs"))
    cfg.input.path = str(tmp_path / "structs")
    with pytest.raises(
        RecsysError,
        match=r"column user_id \(for user_id\) is of type struct<n:int,s:string>; ids must be strings or numbers",
    ):
        JOBS["ingest"](spark, cfg)


def test_a_file_that_is_not_parquet_is_one_clear_error(spark, cfg, tmp_path):
    from recsys_spark.errors import RecsysError
    from recsys_spark.jobs.runner import JOBS

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "events.parquet").write_bytes(bytes(range(256)) * 8)
    cfg.input.path = str(tmp_path / "bad")
    with pytest.raises(RecsysError) as e:
        JOBS["ingest"](spark, cfg)
    assert str(e.value).startswith(f"cannot read {tmp_path}/bad as parquet: ") and "events.parquet" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_raw_partition_written_by_pandas_with_other_types_is_one_error_naming_the_file(spark, cfg, tmp_path):
    import datetime as dt

    import pandas as pd

    from recsys_spark.errors import RecsysError
    from recsys_spark.jobs.runner import run_job

    raw = tmp_path / "raw"
    spark.createDataFrame(
        [("u1", "i1", "view", dt.datetime(2026, 1, 1, 10), None, "2026-01-01")],
        "user_id string, item_id string, event_type string, event_ts timestamp, value double, event_date string",
    ).write.partitionBy("event_date").parquet(str(raw))
    (raw / "event_date=2026-01-02").mkdir()
    late = pd.DataFrame(  # pandas: nanosecond timestamps without a zone
        {"user_id": ["u2"], "item_id": ["i1"], "event_type": ["view"], "event_ts": [pd.Timestamp("2026-01-02 10:00")]}
    )
    late.assign(value=[None]).astype({"value": "float64"}).to_parquet(raw / "event_date=2026-01-02" / "p.parquet")
    cfg.input.path = str(raw)
    with pytest.raises(RecsysError) as e:
        run_job("ingest", spark, cfg)
    assert str(e.value).startswith(
        f"cannot read {raw}/event_date=2026-01-02/p.parquet: Data type mismatches when reading Parquet column "
        "[event_ts]. Expected Spark type timestamp, actual Parquet type INT64. Its column types differ"
    ), str(e.value)
    assert "\n" not in str(e.value)


def test_a_corrupt_file_in_the_events_table_is_one_error_naming_it(spark, cfg, tmp_path):
    from recsys_spark.errors import RecsysError
    from recsys_spark.jobs.runner import run_job

    cfg.generate.events, cfg.generate.users = 2000, 100
    run_job("generate", spark, cfg)
    run_job("ingest", spark, cfg)
    victim = sorted(Path(os.path.realpath(cfg.path("events"))).glob("event_date=*/*.parquet"))[0]
    victim.write_bytes(b"not parquet" * 100)
    with pytest.raises(RecsysError) as e:
        run_job("retention", spark, cfg)
    assert str(e.value).startswith(f"cannot read {victim}: not a readable Parquet file"), str(e.value)
    assert "ingest for events/" in str(e.value) and "\n" not in str(e.value)


def test_a_second_run_on_one_output_root_fails_at_once_naming_the_holder(tmp_path):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        root = tmp_path / "out"
        root.mkdir()
        (root / "_recsys.lock").write_text(
            json.dumps(
                {
                    "pid": holder.pid,
                    "host": os.uname().nodename,
                    "command": "run",
                    "started": "2026-11-25T10:00:00+00:00",
                }
            )
        )
        out = cli("ingest", *tiny(output__root=root), cwd=tmp_path)
        assert out.returncode == 2
        assert out.stderr.strip().splitlines() == [
            f"error: output.root {root} is in use by pid {holder.pid} on {os.uname().nodename} "
            "(run, started 2026-11-25T10:00:00+00:00): "
            f"wait for it, or use another output.root; if that run is gone, delete {root}/_recsys.lock"
        ]
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone now: its lock is stale, reported and taken over; the run then fails only
    # for its own reason (no input), and leaves no lock behind.
    out = cli("ingest", *tiny(output__root=root), cwd=tmp_path)
    assert (
        f"removing a stale lock on {root}: pid {holder.pid} (run, started 2026-11-25T10:00:00+00:00) is gone"
        in out.stderr
    )
    assert "error: input path not found" in out.stderr and not (root / "_recsys.lock").exists()


def test_an_output_root_that_is_a_file_is_refused_before_spark(tmp_path):
    (tmp_path / "afile").write_text("x")
    out = cli("ingest", *tiny(output__root=f"{tmp_path}/afile/out"), cwd=tmp_path)
    assert out.returncode == 2 and "log4j" not in out.stderr
    assert (
        out.stderr.strip() == f"error: output.root '{tmp_path}/afile/out': {tmp_path}/afile is a file, not a folder: "
        "point output.root at a folder (e.g. output)"
    )


@pytest.mark.slow
def test_no_secret_in_any_output_store_artifact_or_log(pipeline_run, tmp_path):
    # The suite's run planted a password in the reader options and an S3 secret in the Spark conf.
    base = pipeline_run.base
    leaks = [p for p in base.rglob("*") if p.is_file() and b"hunter2" in p.read_bytes()]
    assert not leaks and "hunter2" not in pipeline_run.stdout + pipeline_run.stderr
    assert (base / "out" / "model" / "config.yaml").exists()
    # Credentials in a tracking URI are never printed, not even in the error for an unreachable server.
    bad = cli("ingest", "--set", "tracking.uri=http://alice:hunter3@127.0.0.1:1", cwd=tmp_path)
    assert bad.returncode == 2 and "hunter3" not in bad.stdout + bad.stderr
    assert "error: MLflow tracking server http://***@127.0.0.1:1 is not reachable" in bad.stderr


RAW_D = [
    ("u1", "i1", "2026-01-10 10:00:00"),
    ("u2", "i1", "2026-01-10 11:00:00"),
    ("u3", "i2", "2026-01-11 09:00:00"),  # in raw partition D but dated D+1: a late event
    ("u4", "i3", "not a time"),
    (None, "i1", "2026-01-11 12:00:00"),
]
RAW_D1 = [
    ("u5", "i1", "2026-01-11 10:00:00"),
    ("u6", "i2", "2026-01-11 11:00:00"),
    ("u7", "i3", "2026-01-11 12:00:00"),
    ("u8", "i1", "bad"),
]


def write_raw(spark, path, parts):
    rows = [(u, i, "view", ts, None, day) for day, rs in parts.items() for u, i, ts in rs]
    df = spark.createDataFrame(
        rows, "user_id string, item_id string, event_type string, event_ts string, value double, event_date string"
    )
    df.write.mode("overwrite").partitionBy("event_date").parquet(str(path))


def tables(spark, cfg):
    from recsys_spark.infra.tables import read_table

    events = sorted(((str(r.event_date), r.user_id) for r in read_table(spark, cfg.path("events")).collect()), key=repr)
    quarantine = sorted(
        ((str(r.parsed_event_date), r.user_id, r._reason) for r in read_table(spark, cfg.path("quarantine")).collect()),
        key=repr,  # a null user id sorts beside the others
    )
    return events, quarantine


FULL_EVENTS = [
    ("2026-01-10", "u1"),
    ("2026-01-10", "u2"),
    ("2026-01-11", "u3"),
    ("2026-01-11", "u5"),
    ("2026-01-11", "u6"),
    ("2026-01-11", "u7"),
]
FULL_QUARANTINE = [
    ("2026-01-11", None, "null_user_id"),
    ("unparsed", "u4", "bad_timestamp"),
    ("unparsed", "u8", "bad_timestamp"),
]


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_a_partial_run_touches_only_its_dates_and_merges_what_falls_outside(spark, cfg, tmp_path):
    import datetime as dt

    from recsys_spark.jobs.runner import JOBS

    write_raw(spark, tmp_path / "raw", {"2026-01-10": RAW_D, "2026-01-11": RAW_D1})
    cfg.input.path = str(tmp_path / "raw")
    full = JOBS["ingest"](spark, cfg)
    assert (full.rows_read, full.rows_clean) == (9, 6)
    assert tables(spark, cfg) == (FULL_EVENTS, FULL_QUARANTINE)
    cfg.ingest.date_from = cfg.ingest.date_to = dt.date(2026, 1, 10)
    part = JOBS["ingest"](spark, cfg)
    assert (part.rows_read, part.rows_clean) == (5, 3)  # raw partition D only
    # D+1 keeps its 4 events (the late u3 once, not alone); the unparsed and D+1 quarantine rows of raw D are
    # replaced by this run's copies, raw D+1's stay.
    assert tables(spark, cfg) == (FULL_EVENTS, FULL_QUARANTINE)


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_a_partial_run_keeps_the_events_of_its_dates_that_arrived_in_other_raw_partitions(spark, cfg, tmp_path):
    # Issue 27, defect 8: raw D+1 holds a late event dated D (u9), raw D an early one dated D+1 (u3) and
    # a bad row dated D+1 (no user). Each partial run rebuilds its date from its own raw partition and
    # keeps the other's rows, in events and in the quarantine (where raw D+1 adds a bad row of D+1: u10).
    import datetime as dt

    from pyspark.sql import functions as F

    from recsys_spark.infra.tables import read_table
    from recsys_spark.jobs.runner import JOBS

    late, bad = ("u9", "i2", "2026-01-10 23:00:00"), ("u10", None, "2026-01-11 13:00:00")
    write_raw(spark, tmp_path / "raw", {"2026-01-10": RAW_D, "2026-01-11": [*RAW_D1, late, bad]})
    cfg.input.path = str(tmp_path / "raw")
    JOBS["ingest"](spark, cfg)
    full = (
        sorted([*FULL_EVENTS, ("2026-01-10", "u9")], key=repr),
        sorted([*FULL_QUARANTINE, ("2026-01-11", "u10", "null_item_id")], key=repr),
    )
    assert tables(spark, cfg) == full
    arrived = read_table(spark, cfg.path("events")).where(F.col("user_id").isin("u3", "u9")).collect()
    raw_dates = {r.user_id: str(r.raw_date) for r in arrived}
    assert raw_dates == {"u3": "2026-01-10", "u9": "2026-01-11"}  # where each arrived, beside its own date
    for day in (dt.date(2026, 1, 10), dt.date(2026, 1, 11)):
        cfg.ingest.date_from = cfg.ingest.date_to = day
        JOBS["ingest"](spark, cfg)
        assert tables(spark, cfg) == full, day


def test_a_full_run_leaves_nothing_of_an_earlier_different_input(spark, cfg, tmp_path):
    from recsys_spark.jobs.runner import JOBS

    write_raw(spark, tmp_path / "a", {"2026-01-10": RAW_D, "2026-01-11": RAW_D1})
    write_raw(spark, tmp_path / "b", {"2026-01-12": [("u9", "i1", "2026-01-12 10:00:00"), ("u9", "i2", "junk")]})
    cfg.input.path = str(tmp_path / "a")
    JOBS["ingest"](spark, cfg)
    cfg.input.path = str(tmp_path / "b")
    out = JOBS["ingest"](spark, cfg)
    assert tables(spark, cfg) == ([("2026-01-12", "u9")], [("unparsed", "u9", "bad_timestamp")])
    assert (out.rows_clean, out.rows_quarantined) == (1, 1)


def test_recovery_removes_only_sparks_checkpoint_folders(tmp_path):
    """A checkpoint dir that holds tables (spark.checkpoint_dir = output.root, refused by config
    since) once made start-up recovery delete every table: only UUID-named session folders go."""
    from recsys_spark.infra.versions import recover

    root = tmp_path / "out"
    session = root / "0f8fad5b-d9cb-469f-a165-70867728950e"
    for d in (root / "events" / "event_date=2026-01-05", root / "raw", session / "rdd-7"):
        d.mkdir(parents=True)
    (root / "events" / "event_date=2026-01-05" / "part-0.parquet").write_text("x")
    assert recover(str(root), str(root)) == [f"removed {session}"]
    assert sorted(p.name for p in root.iterdir()) == ["events", "raw"]
    assert (root / "events" / "event_date=2026-01-05" / "part-0.parquet").exists()


def test_an_empty_or_half_written_lock_is_taken_over_once_its_writer_is_gone(tmp_path, caplog):
    """A lock whose writer died between creating and filling it held the root forever ("pid None
    on None"); a fresh one is a writer mid-way: try again."""
    from recsys_spark.errors import RecsysError
    from recsys_spark.infra.lock import LOCK_NAME, output_lock

    root = tmp_path / "out"
    root.mkdir()
    lock = root / LOCK_NAME
    lock.write_text('{"pid": 12')  # half-written
    with pytest.raises(RecsysError, match=f"another run is taking {lock} right now: try again"):
        with output_lock(str(root), "ingest"):
            pass
    for text in ('{"pid": 12', ""):
        lock.write_text(text)
        os.utime(lock, (1_700_000_000, 1_700_000_000))  # written long ago
        with output_lock(str(root), "ingest"):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not lock.exists()
    assert caplog.text.count(f"removing an empty or half-written lock on {root}") == 2


@pytest.mark.slow  # over 10 s on its own: make test runs it, make test-fast does not
def test_local_mode_listens_on_loopback_only_with_the_ui_on(tmp_path):
    """The driver bound the machine's external interface and the UI 0.0.0.0:4040; local mode now
    keeps every port (RPC, block manager, UI) on 127.0.0.1."""
    script = (
        "import os, sys, json\n"
        "from recsys_spark.config import load_config\n"
        "from recsys_spark.infra.session import build_session\n"
        f"cfg = load_config(None, ['spark.master=local[1]', 'output.root={tmp_path}/out'])\n"
        "cfg.spark.conf = {'spark.ui.enabled': 'true', 'spark.ui.port': '0'}\n"
        "spark = build_session(cfg)\n"
        "pid = spark._jvm.java.lang.ProcessHandle.current().pid()\n"
        "print(json.dumps({'pid': pid, 'ui': spark.sparkContext.uiWebUrl}))\n"
        "sys.stdout.flush(); sys.stdin.readline(); spark.stop()\n"
    )
    env = scrubbed_env(drop=("SPARK_LOCAL_IP",))
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    try:
        up = json.loads(proc.stdout.readline())
        addresses = listening(up["pid"])
        assert up["ui"]  # the UI is on (its URL names the host: localhost)
        ui_port = int(up["ui"].rsplit(":", 1)[1])
        assert len(addresses) >= 3 and ui_port in {port for _, port in addresses}, addresses  # RPC, blocks, UI, py4j
        assert {host for host, _ in addresses} == {"127.0.0.1"}, addresses
    finally:
        proc.communicate("\n", timeout=120)
