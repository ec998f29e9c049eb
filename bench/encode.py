"""`python -m bench.encode`: item-text encoding throughput on UCI Online Retail's descriptions.

The sentence-transformers encoder (the text extra) and Word2Vec, each on the same texts in one
local[2] session, after an untimed warm-up (Python workers, model load): items per second, and
per core (2 tasks, one torch thread each).
"""

from __future__ import annotations

import dataclasses

from recsys_spark.config import load_config
from recsys_spark.infra.session import build_session
from recsys_spark.items.texts import (
    has_sentence_transformers,
    resolve_encoder,
    sentence_embeddings,
    word2vec_embeddings,
)
from recsys_spark.jobs.items import read_texts

from .common import machine, timed


def main() -> None:
    cfg = load_config("conf/online_retail.yaml", ["spark.master=local[2]", "tracking.enabled=false"])
    spark = build_session(cfg)
    cores = spark.sparkContext.defaultParallelism
    texts = read_texts(spark, cfg).repartition(cores).cache()
    n = texts.count()

    def noop(df):
        return df.write.format("noop").mode("overwrite").save()

    rows = []
    if has_sentence_transformers():
        _, model = resolve_encoder(dataclasses.replace(cfg.text, encoder="sentence-transformers"))
        noop(sentence_embeddings(texts.limit(cores * 4), model))  # warm-up: workers load the model
        secs, _ = timed(lambda: noop(sentence_embeddings(texts, model, cfg.text.batch_size)), "all-MiniLM-L6-v2")
        rows.append(("all-MiniLM-L6-v2 (sentence-transformers)", secs))
    secs, _ = timed(lambda: noop(word2vec_embeddings(texts, cfg.text.dimension)), "word2vec (fit + transform)")
    rows.append((f"word2vec {cfg.text.dimension}-d (Spark ML)", secs))
    spark.stop()
    print(f"\nmachine: {machine()}; local[{cores}]; {n:,} item descriptions (UCI Online Retail)")
    for name, secs in rows:
        print(f"  {name:<44}{secs:>7.1f} s {n / secs:>9,.0f} items/s {n / secs / cores:>8,.0f} items/s per core")


if __name__ == "__main__":
    main()
