"""Reading raw event input (Parquet, CSV, JSON lines) without losing a row.

CSV is read as strings with a `_corrupt_record` column, so a malformed line is kept (and later
quarantined) instead of being dropped or failing the job. Every row carries its `_source` file.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

from recsys_spark.config import InputConfig
from recsys_spark.errors import RecsysError, first_line
from recsys_spark.events import schema as S
from recsys_spark.events.validation import CORRUPT, parse_timestamp
from recsys_spark.infra.filesystem import path_exists
from recsys_spark.infra.paths import local_path


def read_source(
    spark: SparkSession,
    inp: InputConfig,
    path: str,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> DataFrame:
    """Raw rows with `_source`; with a date range, only those `event_date=` partitions."""
    if not path_exists(spark, path):
        raise missing_input(path)
    options = {k: str(v) for k, v in inp.options.items()}
    try:
        if inp.format == "parquet":
            df = spark.read.options(**options).parquet(path)
        elif inp.format == "csv":
            df = _read_csv(spark, path, options)
        else:
            df = spark.read.options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT, **options).json(path)
    except Exception as e:  # AnalysisException for a wrong layout; a Spark error for a file that is not what it claims
        raise RecsysError(
            f"cannot read {path} as {inp.format}: {first_line(e)}. Expected columns {sorted(inp.columns.values())}; "
            "check input.format and input.options"
        ) from None
    df = df.withColumn(S.SOURCE, F.col("_metadata.file_path"))
    if date_from or date_to:
        df = _date_range(df, inp, date_from, date_to)
    return df


def stream_source(spark: SparkSession, inp: InputConfig, path: str, max_files: int | None = None) -> DataFrame:
    """The raw input as a stream of new files: the columns (and partition columns) `read_source`
    finds in what is there now, read with the same options (CSV as strings and malformed lines
    kept), each row with its `_source` file and `_landed` (the file's modification time)."""
    static = read_source(spark, inp, path)
    schema = static.drop(S.SOURCE).schema
    options = {k: str(v) for k, v in inp.options.items()}
    if inp.format == "csv":
        options = {**CSV_DEFAULTS, **options, "inferSchema": "false", "mode": "PERMISSIVE"}
    elif inp.format == "json":
        options = {**options, "mode": "PERMISSIVE"}
    if inp.format != "parquet":
        options["columnNameOfCorruptRecord"] = CORRUPT
        if CORRUPT not in schema.fieldNames():
            schema = schema.add(StructField(CORRUPT, StringType()))
    if max_files:
        options["maxFilesPerTrigger"] = str(max_files)
    reader = spark.readStream.schema(schema).options(**options).format(inp.format)
    return reader.load(path).select(
        "*", F.col("_metadata.file_path").alias(S.SOURCE), F.col("_metadata.file_modification_time").alias(LANDED)
    )


LANDED = "_landed"  # stream rows: when their file landed (its modification time)


def missing_input(path: str) -> RecsysError:
    return RecsysError(
        f"input path not found: {path} (set input.path, or pass --set input.path=<dir>; "
        "without input.path, `recsys-spark run` generates demo data there)"
    )


def check_local_input(path: str) -> None:
    """A missing local input path, caught before Spark starts (paths on other filesystems are checked by
    `read_source`)."""
    local = local_path(path)
    if local is not None and not local.exists():
        raise missing_input(path)


# CSV as Python's `csv` module, pandas and spreadsheets write it (RFC 4180): a quote inside a
# quoted field is doubled, and a quoted field may hold a newline. Spark's defaults (escape `\`,
# one record per line) would keep `""` in ids and split a record in two. `input.options` overrides.
CSV_DEFAULTS = {"header": "true", "escape": '"', "multiLine": "true"}


def _read_csv(spark: SparkSession, path: str, options: dict[str, str]) -> DataFrame:
    opts = {**CSV_DEFAULTS, **options, "inferSchema": "false"}
    header = spark.read.options(**opts).csv(path).schema
    schema = StructType([StructField(f.name, StringType()) for f in header] + [StructField(CORRUPT, StringType())])
    return spark.read.options(mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT, **opts).schema(schema).csv(path)


def _date_range(df: DataFrame, inp: InputConfig, date_from: dt.date | None, date_to: dt.date | None) -> DataFrame:
    """Prune `event_date=` partitions when the source has them; else filter on the raw timestamp."""
    if "event_date" in df.columns:
        day = F.col("event_date").cast("date")
    else:
        day = F.to_date(parse_timestamp(df, inp.columns["event_ts"], inp))
    # A row whose date cannot be parsed belongs to no range: a full run quarantines it (`unparsed`).
    return df.where(in_date_range(day, date_from, date_to))


def in_date_range(day: Column, date_from: dt.date | None, date_to: dt.date | None) -> Column:
    """True where `day` lies in [date_from, date_to] (either bound optional); false where it is null."""
    cond = F.lit(True)
    if date_from:
        cond = cond & (day >= F.lit(date_from))
    if date_to:
        cond = cond & (day <= F.lit(date_to))
    return F.coalesce(cond, F.lit(False))


def read_side_table(spark: SparkSession, key: str, fmt: str, path: str, options: dict[str, str]) -> DataFrame:
    """A side table (e.g. item texts, configured at `key`) as the source reader would read it: CSV
    by RFC 4180, strings only."""
    local = local_path(path)
    if local is not None and not local.exists():
        raise RecsysError(f"{key} not found: {path} (point {key} at the table, or set it to null)")
    if fmt == "csv":
        return spark.read.options(**{**CSV_DEFAULTS, **options, "inferSchema": "false"}).csv(path)
    return spark.read.options(**options).format(fmt).load(path)
