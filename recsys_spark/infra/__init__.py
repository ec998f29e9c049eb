"""The plumbing every job stands on: the crash-safe table layer, the output lock, the
SparkSession builder, native BLAS checks, step timing and path kinds.

Submodules are imported where used (`from recsys_spark.infra import blas`), not here, so that
importing one never loads the others (and with them pyspark).
"""

__all__ = ["blas", "lock", "paths", "session", "tables", "timing"]
