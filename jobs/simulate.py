"""spark-submit entry point: the simulated feedback loop with a known effect.

spark-submit jobs/simulate.py --config conf/local.yaml --rounds 2
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
