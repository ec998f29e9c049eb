"""spark-submit entry point: the whole pipeline (`recsys-spark run`).

spark-submit jobs/pipeline.py --config conf/local.yaml
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
