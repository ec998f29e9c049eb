"""spark-submit entry point: recsys-spark items.

spark-submit jobs/items.py --config conf/online_retail.yaml
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["items", *sys.argv[1:]]))
