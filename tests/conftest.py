"""One local[2] SparkSession for the whole test run, built by the project's own builder."""

from __future__ import annotations

import os as _os
import time as _time

import pytest

from recsys_spark.config import Config, SearchSpace
from recsys_spark.session import build_session


def small_config(root: str) -> Config:
    """Config sized for tests: local[2], 2 shuffle partitions, no UI, outputs under `root`."""
    cfg = Config()
    cfg.spark.master = "local[2]"
    cfg.spark.shuffle_partitions = 2
    cfg.spark.driver_memory = "4g"  # the whole suite shares it (2g ran out near the end once the suite grew)
    cfg.spark.log_level = "ERROR"
    cfg.spark.conf = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.default.parallelism": "2",
    }
    cfg.output.root = root
    g = cfg.generate
    g.events, g.users, g.items, g.clusters, g.days, g.users_per_chunk = 6000, 400, 120, 4, 56, 200
    return cfg


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    cfg = small_config(str(tmp_path_factory.mktemp("spark")))
    session = build_session(cfg)
    yield session
    session.stop()


def tiny_training(cfg):
    cfg.als.max_iter = 5
    cfg.tune.trials = 3
    cfg.tune.space = SearchSpace(
        rank=[4, 8], reg_param=[0.05], alpha=[1.0, 10.0], max_iter=[5], confidence=["linear", "log"]
    )
    cfg.split.test_days, cfg.tune.validation_days = 7, 7
    cfg.recommend.n = 5
    return cfg


@pytest.fixture(scope="session")
def trained(spark, tmp_path_factory):
    """generate -> ingest -> train once on tiny data; shared by the job tests."""
    cfg = tiny_training(small_config(str(tmp_path_factory.mktemp("train"))))
    from recsys_spark.jobs.runner import JOBS

    JOBS["generate"](spark, cfg)
    JOBS["ingest"](spark, cfg)
    return cfg, JOBS["train"](spark, cfg)


@pytest.fixture
def cfg(tmp_path) -> Config:
    return small_config(str(tmp_path / "out"))


# Collected and created timestamps are naive local times in PySpark: make local time UTC.
_os.environ["TZ"] = "UTC"
_time.tzset()
