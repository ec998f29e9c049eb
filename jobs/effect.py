"""spark-submit entry point: treatment vs control after a served run (the effect of recommendations).

spark-submit jobs/effect.py --config conf/local.yaml [--run-id ID | --served-date YYYY-MM-DD]
"""

import sys

from recsys_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["effect", *sys.argv[1:]]))
