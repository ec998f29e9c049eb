"""spark-submit entry point: recsys-spark evaluate-new-items.

spark-submit jobs/evaluate_new_items.py --config conf/online_retail.yaml
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate-new-items", *sys.argv[1:]]))
