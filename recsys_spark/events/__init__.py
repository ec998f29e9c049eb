"""Events from raw input to clean table: the schema, readers that keep every row, validation
with one reason per bad row, the ingest rules' whitelist, the synthetic generator, and privacy
(pseudonyms, the erasure list).

Submodules are imported where used (`from recsys_spark.events import privacy`), not here, so that
importing one never loads the others (and with them pyspark).
"""

__all__ = ["privacy", "rules", "schema", "sources", "synthetic", "validation"]
