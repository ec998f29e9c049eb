"""spark-submit entry point: clean events -> tuned ALS, evaluated against popularity; model + eval tables.

spark-submit jobs/train.py --config conf/local.yaml
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
