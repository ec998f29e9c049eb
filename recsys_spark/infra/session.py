"""The one place a SparkSession is built from config."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspark.sql import SparkSession

from recsys_spark.config import Config
from recsys_spark.errors import RecsysError, first_line
from recsys_spark.infra import blas

MIN_JAVA = 17
QUIET_LOG4J = Path(__file__).with_name("log4j2-quiet.properties")
log = logging.getLogger("recsys_spark")


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
        raise RecsysError(
            f"java not found: install Java {MIN_JAVA}+ (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )
    if version < MIN_JAVA:
        raise RecsysError(f"java {version} found, Spark 4 needs Java {MIN_JAVA}+: install it and set JAVA_HOME")


def check_master(master: str) -> None:
    """Fail in seconds, naming the master and the fix, where Spark would hang or print traces."""
    fix = "fix spark.master (e.g. local[*]), or run under spark-submit --master"
    if master == "yarn" or master.startswith("yarn"):
        if not (os.environ.get("HADOOP_CONF_DIR") or os.environ.get("YARN_CONF_DIR")):
            raise RecsysError(
                f"spark.master is {master!r} but neither HADOOP_CONF_DIR nor YARN_CONF_DIR is set: "
                f"point one at your cluster's Hadoop config, or {fix}"
            )
    elif master.startswith("spark://"):
        for hostport in master.removeprefix("spark://").split(","):
            host, _, port = hostport.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=5).close()
            except (OSError, ValueError) as e:
                raise RecsysError(
                    f"spark.master {master!r}: cannot reach {hostport} ({e}): start the master, or {fix}"
                ) from None


def use_utc() -> None:
    """Make this process's local time UTC. PySpark turns naive Python datetimes (cutoffs, `now`, the
    data's last day) into instants with the process's zone and collects timestamps back in it, so
    on a machine in Tokyo a cutoff would move by 9 hours. Set before the JVM starts, so the Python
    workers it forks inherit it too."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def build_session(cfg: Config) -> SparkSession:
    """SparkSession for `cfg`: UTC everywhere, Kryo, checkpoint dir set; master only outside spark-submit."""
    use_utc()
    if not under_spark_submit():
        check_java()
        # Workers must run the driver's interpreter (the venv with pandas/pyarrow), not `python3`.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        if (cfg.spark.master or "").startswith("local"):
            # The driver's RPC, block manager and UI bind loopback only (Spark's default is the machine's
            # external interface and 0.0.0.0 for the UI); export SPARK_LOCAL_IP to choose otherwise.
            os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(cfg.spark.app_name)
    if cfg.spark.master and not under_spark_submit():
        check_master(cfg.spark.master)
        builder = builder.master(cfg.spark.master)
    native = blas.resolve(cfg.spark.native_blas)
    threads = str(cfg.spark.blas_threads)
    os.environ["OPENBLAS_NUM_THREADS"] = threads  # the driver JVM inherits it (in local mode it runs every task)
    if native.loader_dir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (native.loader_dir, os.environ.get("LD_LIBRARY_PATH")) if p
        )
    java = " ".join(o for o in ("-Duser.timezone=UTC", native.java_options()) if o)
    quiet = "" if cfg.spark.verbose else f" -Dlog4j2.configurationFile={QUIET_LOG4J}"  # the console is the driver's
    conf = {
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.extraJavaOptions": java + quiet,
        "spark.executor.extraJavaOptions": java,
        "spark.executorEnv.OPENBLAS_NUM_THREADS": threads,
        blas.SOURCE_KEY: native.source,
        "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": str(cfg.spark.verbose).lower(),
    }
    if native.loader_dir:
        conf["spark.executorEnv.LD_LIBRARY_PATH"] = native.loader_dir
    if cfg.spark.driver_memory and not under_spark_submit():
        conf["spark.driver.memory"] = cfg.spark.driver_memory
    conf.update(cfg.spark.conf)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as e:  # Py4J and PySpark raise several types for a bad master or conf
        raise RecsysError(
            f"cannot start Spark (master {cfg.spark.master!r}): {first_line(e)}; check spark.master and spark.conf"
        ) from None
    spark.sparkContext.setLogLevel(cfg.spark.log_level if cfg.spark.verbose else "ERROR")
    try:
        check_shared_paths(spark.sparkContext.master, cfg)
    except RecsysError:
        spark.stop()
        raise
    spark.sparkContext.setCheckpointDir(cfg.checkpoint_dir)
    log.info("linear algebra: %s", blas.describe(spark))
    return spark


@contextmanager
def command_session(cfg: Config) -> Iterator[SparkSession]:
    """The session of one command: stopped on the way out, its checkpoint folder removed when the
    command succeeded (a leftover one tells the next command's `recover` that a run was killed)."""
    spark = build_session(cfg)
    try:
        yield spark
        remove_checkpoints(spark, cfg)
    finally:
        spark.stop()


def remove_checkpoints(spark: SparkSession, cfg: Config) -> None:
    """After a successful run: delete its checkpoint folder (Spark makes one per session), and the
    checkpoint root when that leaves it empty. A failed run keeps them for inspection."""
    from recsys_spark.infra.filesystem import remove_dir

    run_dir = spark.sparkContext.getCheckpointDir()
    if run_dir:
        remove_dir(spark, run_dir, cfg.checkpoint_dir)


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
                f"Use shared storage, e.g. --set {key}=hdfs:///tmp/recsys-spark "
                "(or file:///mnt/shared/... on a shared mount)"
            )
