"""The retention job on the trained fixture's data: tables, pictures, CSV, headline, bad input."""

import dataclasses

import pytest
from pyspark.sql import functions as F

from recsys_spark.config import ConfigError, RetentionConfig, load_config
from recsys_spark.errors import RecsysError
from recsys_spark.infra.tables import read_table
from recsys_spark.jobs.runner import JOBS


def with_retention(cfg, **kw):
    return dataclasses.replace(cfg, retention=dataclasses.replace(RetentionConfig(), **kw))


def test_writes_tables_pictures_csv_and_quality(spark, trained):
    cfg, _ = trained
    out = JOBS["retention"](spark, cfg)
    base = cfg.path("retention")
    cohorts = read_table(spark, f"{base}/cohorts")
    assert {r.kind for r in cohorts.select("kind").distinct().collect()} == {"bounded", "unbounded"}
    assert cohorts.where((F.col("period") == 0) & (F.col("retention") != 1.0)).count() == 0
    for png in ("retention_heatmap.png", "retention_curves.png"):
        assert open(f"{base}/{png}", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    header = open(f"{base}/retention_matrix.csv").readline().strip().split(",")
    assert header[:3] == ["cohort", "0", "1"]
    assert len(out.headline) == 3 and 0 < out.dau_mau_last_30_days < 1
    quality = read_table(spark, f"{base}/quality_by_cohort")
    evaluated = read_table(spark, cfg.path("eval/per_user")).count()
    assert quality.agg(F.sum("users_evaluated")).first()[0] == evaluated
    assert JOBS["retention"](spark, cfg).headline == out.headline  # rerun: same result


def test_unknown_event_type_filter_is_a_clear_error(spark, trained):
    cfg, _ = trained
    with pytest.raises(ConfigError, match=r"retention.event_types has unknown event type\(s\) \['refund'\]"):
        load_config(None, ["retention.event_types=[refund]"])


def test_no_events_is_a_clear_error(spark, trained, tmp_path):
    cfg, _ = trained
    empty = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, root=str(tmp_path)))
    read_table(spark, cfg.path("events")).limit(0).write.parquet(empty.path("events"))
    with pytest.raises(RecsysError, match="no events for retention"):
        JOBS["retention"](spark, empty)
