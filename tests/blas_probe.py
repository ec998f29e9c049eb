"""spark-submit driver for tests/test_cluster.py: what the driver and the executors loaded, and the
addresses the driver's JVM listens on, as JSON.

Arguments are --set overrides, as the jobs take them."""

import json
import sys

from recsys_spark.config import load_config
from recsys_spark.infra import blas
from recsys_spark.infra.session import build_session

from support import listening  # tests/, this script's folder, is on sys.path

overrides = [a for flag, a in zip(sys.argv[1::2], sys.argv[2::2], strict=False) if flag == "--set"]
spark = build_session(load_config(None, overrides))
driver_pid = spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid()
print(
    json.dumps(
        {
            "driver_pid": str(driver_pid),
            "listening": sorted(listening(driver_pid)),
            "ui": spark.sparkContext.uiWebUrl,
            "executors": blas.executors(spark),
            "describe": blas.describe(spark),
        }
    )
)
spark.stop()
