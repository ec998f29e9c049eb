"""Items ALS has not seen yet: item texts and their embeddings, the text-to-factor maps, and
the new-item lists.

Submodules are imported where used (`from recsys_spark.items import cold`), not here, so that
importing one never loads the others (and with them pyspark).
"""

__all__ = ["cold", "new", "texts"]
