"""Recommendations: interactions and splits, ALS and its saved bundle, tuning, evaluation,
top-N in Spark (`topn`) over numpy/pyarrow kernels (`kernels`, no pyspark: the served model
uses them too).

Submodules are imported where used (`from recsys_spark.recs import evaluation`), not here, so that
importing one never loads the others (and with them pyspark).
"""

__all__ = ["evaluation", "interactions", "kernels", "model", "split", "topn", "training", "tuning"]
