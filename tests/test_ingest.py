import datetime as dt

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from recsys_spark.config import IngestConfig, InputConfig, RowRule
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.events.validation import check_source_columns, clean_events, quarantine_rows, validate_events
from recsys_spark.names import QUARANTINE_DATE

NOW = dt.datetime(2026, 2, 1)
WEIGHTS = {"view": 1.0, "click": 2.0, "cart": 4.0, "purchase": 8.0}
MAPPED = InputConfig(
    columns={"user_id": "uid", "item_id": "iid", "event_type": "kind", "event_ts": "ts", "value": "qty"},
    event_type_map={"add_to_cart": "cart"},
    timestamp_format="yyyy-MM-dd HH:mm:ss",
)
RULES = IngestConfig(rules=[RowRule(reason="negative_quantity", when="try_cast(qty AS DOUBLE) < 0")])
RAW_COLS = ["uid", "iid", "kind", "ts", "qty"]
RAW_ROWS = [
    ("u1", "i1", "view", "2026-01-05 10:00:00", None),  # clean
    (" u2 ", "i2", " Purchase ", "2026-01-06 12:00:00", "2"),  # clean after trim/lower
    ("u4", "i4", "add_to_cart", "2026-01-07 09:00:00", "1"),  # clean, type mapped
    ("u1", "i1", "view", "2026-01-05 10:00:00", None),  # duplicate of the first
    (None, "i1", "view", "2026-01-05 10:00:00", None),
    ("  ", "i1", "view", "2026-01-05 10:00:00", None),
    ("u3", None, "view", "2026-01-05 10:00:00", None),
    ("u3", "i3", "teleport", "2026-01-05 10:00:00", None),
    ("u3", "i3", "view", "not a date", None),
    ("u3", "i3", "view", "2099-01-01 00:00:00", None),
    ("u3", "i3", "purchase", "2026-01-05 10:00:00", "abc"),
    ("u3", "i3", "purchase", "2026-01-05 10:00:00", "NaN"),
    ("u3", "i3", "purchase", "2026-01-05 10:00:00", "-1"),
]
EXPECTED_REASONS = [
    ("u1", S.DUPLICATE),
    (None, S.NULL_USER_ID),
    ("  ", S.NULL_USER_ID),
    ("u3", S.NULL_ITEM_ID),
    ("u3", S.UNKNOWN_EVENT_TYPE),
    ("u3", S.BAD_TIMESTAMP),
    ("u3", S.FUTURE_TIMESTAMP),
    ("u3", S.BAD_VALUE),
    ("u3", S.NON_FINITE_VALUE),
    ("u3", "negative_quantity"),
]


@pytest.fixture
def raw(spark):
    schema = StructType([StructField(c, StringType()) for c in RAW_COLS])
    return spark.createDataFrame(RAW_ROWS, schema).withColumn(S.SOURCE, F.lit("memory"))


def test_every_rule_gives_its_reason_and_clean_rows_are_canonical(spark, raw):
    validated = validate_events(raw, MAPPED, RULES, WEIGHTS, NOW)
    expected_clean = spark.createDataFrame(
        [
            ("u1", "i1", "view", dt.datetime(2026, 1, 5, 10), None, dt.date(2026, 1, 5)),
            ("u2", "i2", "purchase", dt.datetime(2026, 1, 6, 12), 2.0, dt.date(2026, 1, 6)),
            ("u4", "i4", "cart", dt.datetime(2026, 1, 7, 9), 1.0, dt.date(2026, 1, 7)),
        ],
        StructType([StructField(f.name, f.dataType) for f in S.CLEAN_EVENT_SCHEMA.fields]),
    ).withColumn("raw_date", F.lit(None).cast("date"))  # the raw rows have no event_date of their own
    assert_df_equality(clean_events(validated), expected_clean, ignore_row_order=True, ignore_nullable=True)
    expected_bad = spark.createDataFrame(EXPECTED_REASONS, "uid string, _reason string")
    assert_df_equality(
        quarantine_rows(validated, raw.columns).select("uid", S.REASON), expected_bad, ignore_row_order=True
    )


def test_clean_plus_quarantined_equals_input(raw):
    validated = validate_events(raw, MAPPED, RULES, WEIGHTS, NOW)
    assert clean_events(validated).count() + quarantine_rows(validated, raw.columns).count() == raw.count()


def test_quarantine_keeps_raw_columns_source_and_date(raw):
    q = quarantine_rows(validate_events(raw, MAPPED, RULES, WEIGHTS, NOW), raw.columns)
    assert q.columns == RAW_COLS + [S.REASON, S.SOURCE, QUARANTINE_DATE]
    row = q.where(F.col(S.REASON) == S.BAD_VALUE).first()
    assert (row.qty, row._source, row.parsed_event_date) == ("abc", "memory", "2026-01-05")


def test_timezone_and_unix_formats(spark):
    df = spark.createDataFrame(
        [("u", "i", "2026-01-15 01:30", "1768440600")], "u string, i string, t string, epoch string"
    )
    local = InputConfig(
        columns={"user_id": "u", "item_id": "i", "event_ts": "t"},
        event_type="view",
        timestamp_format="yyyy-MM-dd HH:mm",
        timezone="America/New_York",
    )
    epoch = InputConfig(
        columns={"user_id": "u", "item_id": "i", "event_ts": "epoch"},
        event_type="view",
        timestamp_format="unix_seconds",
    )
    got = [
        clean_events(validate_events(df.withColumn(S.SOURCE, F.lit("m")), inp, IngestConfig(), WEIGHTS, NOW))
        .first()
        .event_ts
        for inp in (local, epoch)
    ]
    # 01:30 in New York (EST, UTC-5) is 06:30 UTC; 1768440600 s is 2026-01-15 01:30 UTC.
    assert got == [dt.datetime(2026, 1, 15, 6, 30), dt.datetime(2026, 1, 15, 1, 30)]


def test_timestamp_formats_are_tried_in_order(spark):
    """Online Retail's gzip copy writes 2010-12-01 08:26:00, the xlsx export 12/1/2010 8:26: one config reads both."""
    df = spark.createDataFrame(
        [("u", "i", "2010-12-01 08:26:00"), ("u", "j", "12/1/2010 8:26"), ("u", "k", "Dec 1 2010")],
        "u string, i string, t string",
    )
    inp = InputConfig(
        columns={"user_id": "u", "item_id": "i", "event_ts": "t"},
        event_type="view",
        timestamp_format=["yyyy-MM-dd HH:mm:ss", "M/d/yyyy H:mm"],
    )
    validated = validate_events(df.withColumn(S.SOURCE, F.lit("m")), inp, IngestConfig(), WEIGHTS, NOW)
    got = clean_events(validated).select("item_id", "event_ts")
    assert_df_equality(
        got,
        spark.createDataFrame(
            [("i", dt.datetime(2010, 12, 1, 8, 26)), ("j", dt.datetime(2010, 12, 1, 8, 26))],
            "item_id string, event_ts timestamp",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert [r[S.REASON] for r in quarantine_rows(validated, df.columns).collect()] == [S.BAD_TIMESTAMP]


def test_missing_source_column_names_it_and_lists_found(raw):
    inp = InputConfig(columns={**MAPPED.columns, "user_id": "CustomerID"})
    with pytest.raises(RecsysError) as e:
        check_source_columns(raw, inp)
    assert "input is missing column(s) CustomerID (for user_id)" in str(e.value)
    assert "columns found: uid, iid, kind, ts, qty" in str(e.value)


def test_bad_rule_sql_fails_naming_the_rule(raw):
    bad = IngestConfig(rules=[RowRule(reason="oops", when="no_such_col > 1")])
    with pytest.raises(RecsysError, match=r"ingest.rules\[0\] \(oops\): invalid SQL condition"):
        validate_events(raw, MAPPED, bad, WEIGHTS, NOW)


def test_timestamps_with_their_own_offset_are_not_shifted_again(spark):
    """input.timezone is for timestamps written without a zone: 10:00+02:00 was stored as 07:00
    UTC under Europe/London (the zone applied twice); in July London is UTC+1."""
    rows = [
        ("a", "2025-07-05 10:00:00+02:00"),
        ("b", "2025-07-05T10:00:00Z"),
        ("c", "2025-07-05 10:00:00"),
        ("d", "2025-07-05T10:00:00.250-04:30"),
    ]
    df = spark.createDataFrame([("u", i, t) for i, t in rows], "u string, i string, t string")
    inp = InputConfig(
        columns={"user_id": "u", "item_id": "i", "event_ts": "t"}, event_type="view", timezone="Europe/London"
    )
    got = clean_events(validate_events(df.withColumn(S.SOURCE, F.lit("m")), inp, IngestConfig(), WEIGHTS, NOW))
    assert_df_equality(
        got.select("item_id", "event_ts"),
        spark.createDataFrame(
            [
                ("a", dt.datetime(2025, 7, 5, 8, 0)),
                ("b", dt.datetime(2025, 7, 5, 10, 0)),
                ("c", dt.datetime(2025, 7, 5, 9, 0)),
                ("d", dt.datetime(2025, 7, 5, 14, 30, 0, 250000)),
            ],
            "item_id string, event_ts timestamp",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


@pytest.mark.parametrize(
    "when, refused",
    [
        (
            "`reflect`('java.lang.System', 'getProperty', 'user.home') IS NOT NULL",
            "the function reflect() is not allowed",
        ),
        ("reflect/**/('java.lang.System', 'exit', 1) = 1", "the function reflect() is not allowed"),
        ("JAVA_METHOD('java.lang.Runtime', 'getRuntime') IS NULL", "the function java_method() is not allowed"),
        ("(SELECT count(*) FROM text.`{secret}`) > 0", "a subquery is not allowed in a rule"),
        ("EXISTS (SELECT 1)", "a subquery (EXISTS) is not allowed in a rule"),
        ("uid IN (SELECT value FROM text.`{secret}`)", "a subquery (IN (SELECT ...)) is not allowed"),
        ("current_user() = 'root'", "the function current_user() is not allowed"),
    ],
)
def test_rules_are_parsed_and_only_pure_expressions_pass(raw, tmp_path, when, refused):
    """One regex guarded the rules: a quoted or commented `reflect` ran JVM methods, and a subquery
    over text.`/etc/hostname` read a local file (its content even reached the error message)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("planted-file-content-4711")
    rule = RowRule(reason="attack", when=when.format(secret=secret))
    with pytest.raises(RecsysError) as e:
        validate_events(raw, MAPPED, IngestConfig(rules=[rule]), WEIGHTS, NOW)
    assert str(e.value).startswith("ingest.rules[0] (attack): ") and refused in str(e.value)
    assert "planted-file-content" not in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_rules_and_ordinary_sql_pass_the_rule_check(spark):
    from recsys_spark.config import load_config
    from recsys_spark.events.rules import check_rule

    shipped = load_config("conf/online_retail.yaml").ingest.rules
    ordinary = [
        "lower(trim(uid)) LIKE 'bot%' OR length(iid) > 20",
        "CASE WHEN try_cast(qty AS DOUBLE) < 0 THEN true ELSE uid IS NULL END",
        "qty BETWEEN 1 AND 3 AND iid IN ('a', 'b') AND NOT (uid <=> 'x')",
        "coalesce(uid, '') RLIKE '^[0-9]+$' AND abs(-1 * 2) % 2 = 0",
    ]
    for i, when in enumerate([r.when for r in shipped] + ordinary):
        check_rule(spark, i, "ok", when)
