"""spark-submit entry point: raw files as they land -> events + quarantine, exactly once, and fresh
lists for their users.

spark-submit jobs/stream.py --config conf/local.yaml [--once]
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
