"""recsys-spark: event ingest, ALS recommendations, cohort retention on Spark, tracked in MLflow."""

__version__ = "0.1.0"
