"""What the recommendations did: cohort retention and stickiness, the control arm, the effect
estimator, the feedback-loop simulator, and the report's charts.

Submodules are imported where used (`from recsys_spark.analytics import arms`), not here, so that
importing one never loads the others (and with them pyspark).
"""

__all__ = ["arms", "cohorts", "estimator", "plots", "simulator"]
