"""spark-submit entry point: raw events -> clean events + quarantine.

spark-submit jobs/ingest.py --config conf/local.yaml [--from 2026-01-01 --to 2026-01-31]
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
