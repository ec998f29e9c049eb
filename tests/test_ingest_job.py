"""The ingest job end to end on real files: counts per reason, reruns, failures, date ranges."""

import datetime as dt
import re

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from recsys_spark.config import RowRule
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.tables import read_table, write_table
from recsys_spark.jobs.runner import JOBS

RETAIL_CSV = """InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country
536365,85123A,WHITE HANGING HEART,6,12/1/2010 8:26,2.55,17850,United Kingdom
536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17851,United Kingdom
536366,22633,HAND WARMER UNION JACK,6,12/1/2010 8:28,1.85,17851,United Kingdom
536367,84879,ASSORTED BIRD ORNAMENT,32,12/2/2010 8:34,1.69,,United Kingdom
536368,22960,JAM MAKING SET,3,12/2/2010 8:34,4.25,,France
C536379,D,Discount,-1,12/3/2010 9:41,27.5,14527,United Kingdom
536370,22728,ALARM CLOCK,24,13/45/2010 8:45,3.75,12583,France
536371,22727,ALARM CLOCK RED,abc,12/3/2010 8:45,3.75,12583,France
536372,22726,ALARM CLOCK GREEN,1,12/3/2010 8:45
"""
RETAIL_COUNTS = {
    "duplicate": 1,
    "null_user_id": 2,
    "cancelled": 1,
    "bad_timestamp": 1,
    "bad_value": 1,
    "malformed_row": 1,
}


def retail(cfg, path):
    cfg.input.path = str(path)
    cfg.input.format = "csv"
    cfg.input.columns = {
        "user_id": "CustomerID",
        "item_id": "StockCode",
        "event_ts": "InvoiceDate",
        "value": "Quantity",
    }
    cfg.input.event_type = "purchase"
    cfg.input.timestamp_format = "M/d/yyyy H:mm"
    cfg.ingest.rules = [RowRule(reason="cancelled", when="InvoiceNo LIKE 'C%'")]
    cfg.ingest.max_bad_fraction = 0.9
    return cfg


@pytest.fixture
def retail_cfg(cfg, tmp_path):
    src = tmp_path / "retail"
    src.mkdir()
    (src / "online_retail.csv").write_text(RETAIL_CSV)
    return retail(cfg, src)


def test_csv_quarantine_counts_match_the_file(spark, retail_cfg):
    retail_cfg.ingest.rules.append(RowRule(reason="from_mars", when="Country = 'Mars'"))
    out = JOBS["ingest"](spark, retail_cfg)
    assert out.rows_read == 10
    assert out.rows_clean == 3
    assert out.quarantined_by_reason == dict(
        sorted({**RETAIL_COUNTS, "from_mars": 0}.items())
    )  # a rule matching nothing shows 0
    assert "  quarantined from_mars: 0" in out.lines()
    events = read_table(spark, retail_cfg.path("events"))
    expected = spark.createDataFrame(
        [
            ("17850", "85123A", "purchase", dt.datetime(2010, 12, 1, 8, 26), 6.0, dt.date(2010, 12, 1)),
            ("17850", "71053", "purchase", dt.datetime(2010, 12, 1, 8, 26), 6.0, dt.date(2010, 12, 1)),
            ("17851", "22633", "purchase", dt.datetime(2010, 12, 1, 8, 28), 6.0, dt.date(2010, 12, 1)),
        ],
        "user_id string, item_id string, event_type string, event_ts timestamp, value double, event_date date",
    )
    assert_df_equality(events.select(*S.EVENT_COLUMNS), expected, ignore_row_order=True, ignore_nullable=True)
    q = read_table(spark, retail_cfg.path("quarantine"))
    malformed = q.where(F.col(S.REASON) == "malformed_row").first()
    assert malformed["_corrupt_record"] == "536372,22726,ALARM CLOCK GREEN,1,12/3/2010 8:45"
    assert malformed[S.SOURCE].endswith("online_retail.csv")
    # Every common reader sees the quarantine's partitions (pyarrow skips folders starting with "_").
    import pandas as pd

    assert pd.read_parquet(retail_cfg.path("quarantine")).shape[0] == 7


def test_rerun_overwrites_without_duplicates(spark, retail_cfg):
    JOBS["ingest"](spark, retail_cfg)
    JOBS["ingest"](spark, retail_cfg)
    assert read_table(spark, retail_cfg.path("events")).count() == 3
    assert read_table(spark, retail_cfg.path("quarantine")).count() == 7


def test_too_many_bad_rows_fails_naming_reasons_and_writes_nothing(spark, retail_cfg):
    retail_cfg.ingest.max_bad_fraction = 0.5
    with pytest.raises(RecsysError) as e:
        JOBS["ingest"](spark, retail_cfg)
    msg = str(e.value)
    assert "70.0% of rows are bad, above ingest.max_bad_fraction=0.5 (7 of 10)" in msg
    assert "top reasons: null_user_id=2" in msg
    assert "example row: {'InvoiceNo': '53636" in msg and "'_reason': 'null_user_id'}" in msg
    assert not path_exists(spark, retail_cfg.path("events"))


def test_timestamp_mismatch_names_the_value_and_the_pattern(spark, retail_cfg):
    retail_cfg.input.timestamp_format = "yyyy-MM-dd HH:mm:ss"
    with pytest.raises(RecsysError) as e:
        JOBS["ingest"](spark, retail_cfg)
    msg = str(e.value)
    assert "top reasons: bad_timestamp=6" in msg
    assert re.search(
        r"InvoiceDate='1\d/\d+/2010 \d+:\d\d' does not parse with input.timestamp_format='yyyy-MM-dd HH:mm:ss': "
        r"set input.timestamp_format",
        msg,
    ), msg


def test_unknown_event_types_name_the_value_and_the_two_fixes(spark, retail_cfg):
    retail_cfg.input.columns["event_type"] = "Country"  # 'United Kingdom', 'France': no such event types
    retail_cfg.input.event_type = None
    with pytest.raises(RecsysError) as e:
        JOBS["ingest"](spark, retail_cfg)
    msg = str(e.value)
    assert "no row is valid" in msg and "top reasons: unknown_event_type=" in msg
    assert re.search(
        r"Country='(United Kingdom|France)' gives event type '(united kingdom|france)', which is not in "
        r"events.weights \['cart', 'click', 'purchase', 'view'\]: map it to one with input.event_type_map "
        r"\(e.g. \{(united kingdom|france): view\}\), or give it a weight in events.weights",
        msg,
    ), msg
    retail_cfg.input.event_type_map = {"United Kingdom": "purchases", "France": "purchases"}  # a typo in the map
    with pytest.raises(
        RecsysError,
        match=r"gives event type 'purchases', which is not in events.weights \[.*\]: "
        r"input.event_type_map maps \['France', 'United Kingdom'\] to it: map to one of those instead",
    ):
        JOBS["ingest"](spark, retail_cfg)
    retail_cfg.input.event_type_map = {}
    retail_cfg.input.columns.pop("event_type")
    retail_cfg.input.event_type = "order"  # a constant type for every row
    with pytest.raises(RecsysError, match=r"input.event_type='order' gives event type 'order', which is not in"):
        JOBS["ingest"](spark, retail_cfg)


def test_no_valid_row_fails(spark, retail_cfg):
    retail_cfg.ingest.max_bad_fraction = 1.0
    retail_cfg.input.columns["user_id"] = "Country"
    retail_cfg.input.columns["item_id"] = "Description"
    retail_cfg.input.event_type = "nonsense"
    with pytest.raises(RecsysError, match="no row is valid"):
        JOBS["ingest"](spark, retail_cfg)


def test_missing_column_fails_before_work(spark, retail_cfg):
    retail_cfg.input.columns["user_id"] = "Customer ID"
    with pytest.raises(
        RecsysError,
        match=r"retail is missing column\(s\) Customer ID \(for user_id\); columns found: InvoiceNo, StockCode",
    ):
        JOBS["ingest"](spark, retail_cfg)


def test_date_range_reads_only_those_partitions(spark, cfg):
    JOBS["generate"](spark, cfg)
    cfg.ingest.date_from, cfg.ingest.date_to = dt.date(2026, 1, 10), dt.date(2026, 1, 12)
    JOBS["ingest"](spark, cfg)
    dates = {r.event_date for r in read_table(spark, cfg.path("events")).select("event_date").distinct().collect()}
    assert dates == {dt.date(2026, 1, 10), dt.date(2026, 1, 11), dt.date(2026, 1, 12)}
    # A second range adds its partitions and keeps the first ones.
    cfg.ingest.date_from, cfg.ingest.date_to = dt.date(2026, 1, 20), dt.date(2026, 1, 20)
    JOBS["ingest"](spark, cfg)
    assert read_table(spark, cfg.path("events")).select("event_date").distinct().count() == 4


def test_reader_refuses_a_table_without_success_marker(spark, tmp_path):
    path = str(tmp_path / "half")
    spark.range(3).write.option("mapreduce.fileoutputcommitter.marksuccessfuljobs", "false").parquet(path)
    with pytest.raises(RecsysError, match="has no _SUCCESS marker"):
        read_table(spark, path)
    with pytest.raises(RecsysError, match="table not found"):
        read_table(spark, str(tmp_path / "nothing"))


def test_failed_check_leaves_previous_table_in_place(spark, tmp_path):
    path = str(tmp_path / "t")
    write_table(spark.range(3), path)
    with pytest.raises(RecsysError, match="staged 5 rows but expected 4"):
        write_table(spark.range(5), path, expected_rows=4)
    assert read_table(spark, path).count() == 3
    assert not path_exists(spark, str(tmp_path / "_staging" / "t"))
