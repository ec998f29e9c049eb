"""spark-submit entry point: cohort retention, stickiness, and recommendation quality by cohort.

spark-submit jobs/retention.py --config conf/local.yaml
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["retention", *sys.argv[1:]]))
