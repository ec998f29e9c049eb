"""The canonical clean-event schema and the quarantine reason codes (see shared/design.md)."""

from pyspark.sql.types import DataType, DateType, DoubleType, StringType, StructField, StructType, TimestampType

from recsys_spark.names import EVENT_DATE, RAW_EVENT_COLUMNS

TYPES: dict[str, DataType] = {
    "user_id": StringType(),
    "item_id": StringType(),
    "event_type": StringType(),
    "event_ts": TimestampType(),
    "value": DoubleType(),
    EVENT_DATE: DateType(),
}
# Raw events as the generator and the simulator write them: every column nullable.
RAW_SCHEMA = StructType([StructField(name, TYPES[name]) for name in RAW_EVENT_COLUMNS])
# Clean events: only `value` may be null.
CLEAN_EVENT_SCHEMA = StructType(
    [StructField(name, TYPES[name], name == "value") for name in (*RAW_EVENT_COLUMNS, EVENT_DATE)]
)
EVENT_COLUMNS = [f.name for f in CLEAN_EVENT_SCHEMA.fields]

# Quarantine reasons, in the order rules are checked: a row gets the first that applies.
MALFORMED_ROW = "malformed_row"
NULL_USER_ID = "null_user_id"
NULL_ITEM_ID = "null_item_id"
UNKNOWN_EVENT_TYPE = "unknown_event_type"
BAD_TIMESTAMP = "bad_timestamp"
FUTURE_TIMESTAMP = "future_timestamp"
TOO_OLD = "too_old"
BAD_VALUE = "bad_value"
NON_FINITE_VALUE = "non_finite_value"
DUPLICATE = "duplicate"
LATE = "late"  # a stream row older than its watermark (stream.watermark_hours)

REASON = "_reason"
SOURCE = "_source"
UNPARSED = "unparsed"  # the quarantine's partition (names.QUARANTINE_DATE) of a row without a date: never null,
# since pyarrow cannot read a null partition value beside others
