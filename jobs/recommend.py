"""spark-submit entry point: top-N recommendations per user from a saved model.

spark-submit jobs/recommend.py --config conf/local.yaml
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["recommend", *sys.argv[1:]]))
