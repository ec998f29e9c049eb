"""spark-submit entry point: erase users' rows from every table that holds them, and list them for later ingests.

spark-submit jobs/forget.py --config conf/local.yaml --users a,b   (or --users-file ids.txt)
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["forget", *sys.argv[1:]]))
