"""Validate raw events against the canonical schema; every row is either clean or quarantined.

The steps are DataFrame -> DataFrame functions composed with `DataFrame.transform`:
`parse_events` adds typed canonical columns beside the raw ones, `assign_reasons` gives each bad
row exactly one `_reason` (the first rule it breaks), `mark_duplicates` flags exact repeats of
clean rows. `clean_events` and `quarantine_rows` then split the result: since `_reason` is one
value per row, clean + quarantined = input rows by construction (the job still checks it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DateType, MapType, NumericType, StructType, TimestampNTZType, TimestampType

from recsys_spark import names
from recsys_spark.config import IngestConfig, InputConfig
from recsys_spark.errors import RecsysError
from recsys_spark.events import schema as S
from recsys_spark.events.privacy import pseudonymized
from recsys_spark.events.rules import check_rule

CORRUPT = "_corrupt_record"
_C = {name: f"__{name}" for name in (*names.RAW_EVENT_COLUMNS, "value_raw")}
PARSED_USER_ID = _C["user_id"]  # the parsed user id column of validated rows
PARSED_EVENT_TYPE = _C["event_type"]  # after input.event_type_map and lower-casing
PARSED_EVENT_TS = _C["event_ts"]  # the parsed event time (UTC)


def check_source_columns(df: DataFrame, inp: InputConfig, path: str = "input") -> None:
    """Fail before any work when the mapping names a column the source does not have, or an id
    column holds structured values (a struct would turn into ids like `{21, x21}`)."""
    for key in ("user_id", "item_id"):
        src = inp.columns.get(key)
        if src in df.columns and isinstance(df.schema[src].dataType, (StructType, ArrayType, MapType)):
            raise RecsysError(
                f"{path}: column {src} (for {key}) is of type {df.schema[src].dataType.simpleString()}; ids must be "
                f"strings or numbers: map input.columns.{key} to a plain column (e.g. flatten it first)"
            )
    missing = [f"{src} (for {key})" for key, src in inp.columns.items() if src not in df.columns]
    if missing:
        raise RecsysError(
            f"{path} is missing column(s) {', '.join(missing)}; "
            f"columns found: {', '.join(c for c in df.columns if not c.startswith('_'))}. "
            f"Expected {inp.format} with columns {sorted(inp.columns.values())}: check input.path, input.format, "
            "input.options and input.columns (canonical -> source column)"
        )


def parse_events(df: DataFrame, inp: InputConfig) -> DataFrame:
    """Add typed canonical columns (`__user_id`, ...) beside the untouched raw columns."""
    cols = inp.columns
    if "event_type" in cols:
        etype = F.lower(F.trim(F.col(cols["event_type"]).cast("string")))
        if inp.event_type_map:
            pairs = [F.lit(x) for k, v in inp.event_type_map.items() for x in (k.lower(), v)]
            etype = F.coalesce(F.create_map(*pairs)[etype], etype)
    else:
        etype = F.lit(inp.event_type)
    value_raw = F.col(cols["value"]) if "value" in cols else F.lit(None).cast("double")
    return df.select(
        "*",
        _id(cols["user_id"]).alias(_C["user_id"]),
        _id(cols["item_id"]).alias(_C["item_id"]),
        etype.alias(_C["event_type"]),
        parse_timestamp(df, cols["event_ts"], inp).alias(_C["event_ts"]),
        value_raw.try_cast("double").alias(_C["value"]),
        value_raw.alias(_C["value_raw"]),
    )


def assign_reasons(
    df: DataFrame,
    ingest: IngestConfig,
    event_types: Iterable[str],
    now: dt.datetime,
) -> DataFrame:
    """Add `_reason`: null for a valid row, else the code of the first rule it breaks."""
    ts, value = F.col(_C["event_ts"]), F.col(_C["value"])
    checks: list[tuple[Column, str]] = []
    if CORRUPT in df.columns:
        checks.append((F.col(CORRUPT).isNotNull(), S.MALFORMED_ROW))
    for i, rule in enumerate(ingest.rules):
        checks.append((F.coalesce(_rule_condition(df, i, rule.reason, rule.when), F.lit(False)), rule.reason))
    horizon = now + dt.timedelta(hours=ingest.future_slack_hours)
    checks += [
        (F.col(_C["user_id"]).isNull(), S.NULL_USER_ID),
        (F.col(_C["item_id"]).isNull(), S.NULL_ITEM_ID),
        (ts.isNull(), S.BAD_TIMESTAMP),
        (ts > F.lit(horizon), S.FUTURE_TIMESTAMP),
        (F.to_date(ts) < F.lit(ingest.min_event_date), S.TOO_OLD),
        (~F.coalesce(F.col(_C["event_type"]).isin(list(event_types)), F.lit(False)), S.UNKNOWN_EVENT_TYPE),
        (F.col(_C["value_raw"]).isNotNull() & value.isNull(), S.BAD_VALUE),
        (F.isnan(value) | value.isin(float("inf"), float("-inf")), S.NON_FINITE_VALUE),
    ]
    reason = F.lit(None).cast("string")
    for cond, code in reversed(checks):
        reason = F.when(cond, F.lit(code)).otherwise(reason)
    return df.withColumn(S.REASON, reason)


def mark_duplicates(df: DataFrame) -> DataFrame:
    """Flag all but one copy of each clean row that repeats another on every canonical column."""
    keys = [_C[k] for k in names.RAW_EVENT_COLUMNS]
    w = Window.partitionBy(*keys, F.col(S.REASON).isNull()).orderBy(S.SOURCE)
    dup = F.col(S.REASON).isNull() & (F.row_number().over(w) > 1)
    return df.withColumn(S.REASON, F.when(dup, F.lit(S.DUPLICATE)).otherwise(F.col(S.REASON)))


def validate_events(
    raw: DataFrame, inp: InputConfig, ingest: IngestConfig, event_types: Iterable[str], now: dt.datetime
) -> DataFrame:
    """Raw rows -> the same rows with canonical columns and `_reason` (null when clean)."""
    return (
        raw.transform(parse_events, inp)
        .transform(assign_reasons, ingest, list(event_types), now)
        .transform(mark_duplicates)
    )


def mark_repeats_of(validated: DataFrame, events: DataFrame | None) -> DataFrame:
    """`validated` with clean rows that repeat a row already in the clean `events` table (every
    canonical column equal, null-safe) marked duplicate: what `mark_duplicates` does inside one
    read, across the micro-batches of a stream (the copy that arrived first stays)."""
    if events is None:
        return validated
    keys = list(names.RAW_EVENT_COLUMNS)
    ts = F.col(PARSED_EVENT_TS)
    lo, hi = validated.where(F.col(S.REASON).isNull()).agg(F.min(ts), F.max(ts)).first()
    if lo is None:  # no clean row: nothing to repeat
        return validated
    # A repeat has the same event_ts, so only the partitions of the batch's dates are read (a day
    # either side: event_date was cut in the writing session's time zone).
    day = F.col(names.EVENT_DATE)
    near = (day >= F.lit(lo.date() - dt.timedelta(days=1))) & (day <= F.lit(hi.date() + dt.timedelta(days=1)))
    held = (
        events.where(near & F.col("event_ts").between(lo, hi)).select(*keys).distinct().withColumn("_held", F.lit(True))
    )
    cond = [F.col(_C[k]).eqNullSafe(held[k]) for k in keys]
    joined = validated.join(held, cond, "left").drop(*[held[k] for k in keys])
    dup = F.col(S.REASON).isNull() & F.coalesce(F.col("_held"), F.lit(False))
    return joined.withColumn(S.REASON, F.when(dup, F.lit(S.DUPLICATE)).otherwise(F.col(S.REASON))).drop("_held")


def pseudonymize_rows(validated: DataFrame, inp: InputConfig, key: bytes) -> DataFrame:
    """Validated rows with every user id replaced by its pseudonym: the parsed id, the raw user
    column (as a string; a blank id stays as it was) and, for malformed rows, the whole raw text
    (its hash: the line may hold the id where no parser can find it)."""
    raw, user = inp.columns["user_id"], F.col(_C["user_id"])
    out = validated.withColumn("_pseudonym", pseudonymized(user, key))
    out = out.withColumn(raw, F.when(user.isNotNull(), F.col("_pseudonym")).otherwise(F.col(raw).cast("string")))
    if CORRUPT in out.columns:
        out = out.withColumn(CORRUPT, pseudonymized(F.col(CORRUPT), key))
    return out.withColumn(_C["user_id"], F.col("_pseudonym")).drop("_pseudonym")


def clean_events(validated: DataFrame) -> DataFrame:
    """The valid rows in the canonical clean-event schema, with `raw_date`: the raw input's own
    `event_date` (its partition, which a partial ingest selects by), null where it has none."""
    ts = F.col(_C["event_ts"])
    raw_date = (
        F.col(names.EVENT_DATE).try_cast("date") if names.EVENT_DATE in validated.columns else F.lit(None).cast("date")
    )
    return validated.where(F.col(S.REASON).isNull()).select(
        F.col(_C["user_id"]).alias("user_id"),
        F.col(_C["item_id"]).alias("item_id"),
        F.col(_C["event_type"]).alias("event_type"),
        ts.alias("event_ts"),
        F.col(_C["value"]).alias("value"),
        F.to_date(ts).alias(names.EVENT_DATE),
        raw_date.alias(names.RAW_DATE),
    )


def quarantine_rows(validated: DataFrame, raw_columns: list[str]) -> DataFrame:
    """The bad rows as they came in, with `_reason`, `_source` and the parsed date as a string
    (`unparsed` where there is none: a null partition value is unreadable to pyarrow)."""
    keep = [c for c in raw_columns if c not in (S.REASON, S.SOURCE)]
    return validated.where(F.col(S.REASON).isNotNull()).select(
        *keep,
        S.REASON,
        S.SOURCE,
        F.coalesce(F.to_date(_C["event_ts"]).cast("string"), F.lit(S.UNPARSED)).alias(names.QUARANTINE_DATE),
    )


def _id(col: str) -> Column:
    """Trimmed string id; blank becomes null."""
    s = F.trim(F.col(col).cast("string"))
    return F.when(s == "", F.lit(None)).otherwise(s)


def parse_timestamp(df: DataFrame, col: str, inp: InputConfig) -> Column:
    """Parse the source timestamp to a UTC instant (patterns tried in order); unparseable becomes null."""
    c = F.col(col)
    dtype = df.schema[col].dataType
    fmts = inp.timestamp_formats
    if fmts == ["unix_seconds"]:
        return F.timestamp_seconds(c.try_cast("double"))
    if fmts == ["unix_millis"]:
        return F.timestamp_millis(c.try_cast("long"))
    if isinstance(dtype, (TimestampType, DateType)):
        return c.cast("timestamp")  # already an instant (or a UTC date)
    if isinstance(dtype, TimestampNTZType):
        local = c.cast("string").try_cast("timestamp")
    elif isinstance(dtype, NumericType):
        raise RecsysError(f"input column {col!r} is numeric: set input.timestamp_format to unix_seconds or unix_millis")
    elif fmts:  # the first pattern that parses wins
        local = F.coalesce(*[F.try_to_timestamp(c.cast("string"), F.lit(f)) for f in fmts])
    else:
        local = c.cast("string").try_cast("timestamp")
    # The session time zone is UTC, so `local` holds the wall-clock time; shift it from inp.timezone,
    # unless the text carried its own offset (10:00+02:00, 10:00Z): that parse is the instant already.
    if inp.timezone.upper() == "UTC":
        return local
    own_offset = F.trim(c.cast("string")).rlike(OWN_OFFSET)
    return F.when(own_offset, local).otherwise(F.to_utc_timestamp(local, inp.timezone))


OWN_OFFSET = r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?\s*([zZ]|(UTC|GMT)?[+-]\d{2}(:?\d{2})?|UTC|GMT)$"


def _rule_condition(df: DataFrame, index: int, reason: str, when: str) -> Column:
    check_rule(df.sparkSession, index, reason, when)  # parsed and checked before anything is analysed
    try:
        cond = F.expr(when)
        _ = df.select(cond).schema  # analyse now, so a bad rule fails before any work
    except (AnalysisException, ParseException) as e:
        first = str(e).strip().splitlines()[0]
        raise RecsysError(f"ingest.rules[{index}] ({reason}): invalid SQL condition {when!r}: {first}") from None
    return cond
