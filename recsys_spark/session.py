"""The one place a SparkSession is built from config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from pyspark.sql import SparkSession

from .config import Config
from .errors import RecsysError

MIN_JAVA = 17


def under_spark_submit() -> bool:
    """True when spark-submit launched this Python process (it then owns --master)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def java_major_version() -> int | None:
    """The major version of the `java` Spark will use (JAVA_HOME first), or None if absent."""
    home = os.environ.get("JAVA_HOME")
    java = os.path.join(home, "bin", "java") if home else shutil.which("java")
    if not java or not os.path.exists(java):
        return None
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def check_java() -> None:
    version = java_major_version()
    if version is None:
        raise RecsysError(f"java not found: install Java {MIN_JAVA}+ (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    if version < MIN_JAVA:
        raise RecsysError(f"java {version} found, Spark 4 needs Java {MIN_JAVA}+: install it and set JAVA_HOME")


def build_session(cfg: Config) -> SparkSession:
    """SparkSession for `cfg`: UTC everywhere, Kryo, checkpoint dir set; master only outside spark-submit."""
    if not under_spark_submit():
        check_java()
        # Workers must run the driver's interpreter (the venv with pandas/pyarrow), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if cfg.spark.master and not under_spark_submit():
        builder = builder.master(cfg.spark.master)
    conf = {
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "true",
    }
    if cfg.spark.driver_memory and not under_spark_submit():
        conf["spark.driver.memory"] = cfg.spark.driver_memory
    conf.update(cfg.spark.conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(cfg.spark.log_level)
    try:
        check_shared_paths(spark.sparkContext.master, cfg)
    except RecsysError:
        spark.stop()
        raise
    spark.sparkContext.setCheckpointDir(cfg.checkpoint_dir)
    return spark


def check_shared_paths(master: str, cfg: Config) -> None:
    """On a cluster, executors must reach the checkpoint dir and output root: no bare local paths.

    A URI with a scheme (hdfs://, s3a://, gs://, or file:// for a mount every node shares) is
    accepted; a plain path like `output` would land on each executor's own disk.
    """
    if master.startswith("local"):
        return
    for key, path in (("spark.checkpoint_dir", cfg.checkpoint_dir), ("output.root", cfg.output.root)):
        if "://" not in path:
            raise RecsysError(
                f"{key} is the local path {path!r} but the master is {master}: executors cannot share it. "
                f"Use shared storage, e.g. --set {key}=hdfs:///tmp/recsys-spark (or file:///mnt/shared/... on a shared mount)"
            )
