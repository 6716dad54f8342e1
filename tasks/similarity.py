"""The model's similarity function, one meaning from the export to the score a hit shows.

A sentence-transformers model declares how its embeddings are compared
(``similarity_fn_name`` in ``config_sentence_transformers.json``): cosine (most models; their
embeddings are normalised, in the exported graph when the model itself does not), dot product
(models trained for it, such as ``msmarco-*-dot`` and ``multi-qa-*-dot``: their lengths carry
meaning and are kept) or Euclidean distance. The collection is searched with that function:

- cosine and Euclidean: squared L2 distance in PCA space (Milvus metric ``L2``); cosine of unit
  vectors is 1 − d/2, Euclidean similarity is −√d, as ``SentenceTransformer.similarity`` gives;
- dot: inner product (Milvus metric ``IP``). Passages are stored centred by the PCA, queries are
  projected without the centring, and x·q = (x − μ)·q + μ·q, so a query's score adds its own μ·q
  (``Codec.query_offsets``), which does not change the ranking.

Distances here are "smaller is better" throughout (squared L2, or the negated inner product),
so that one ranking code serves every function. Pure numpy: the codec, search and evaluation
share it without importing each other.
"""

from __future__ import annotations

import numpy as np

SIMILARITIES = ("cosine", "dot", "euclidean")
# Names sentence-transformers accepts for the same functions.
ALIASES = {"cos_sim": "cosine", "dot_product": "dot", "dot_score": "dot"}


class SimilarityError(ValueError):
    """A model declares a similarity function the collection cannot be searched with."""


def parse(name: str | None, where: str = "the model") -> str:
    """The similarity a model declares (None: sentence-transformers' default, cosine)."""
    value = ALIASES.get(str(name), str(name)) if name else "cosine"
    if value not in SIMILARITIES:
        raise SimilarityError(
            f"{where} declares similarity_fn_name {name!r}; vecpress serves {', '.join(SIMILARITIES)} "
            "(Milvus has no index for the others): use a model trained for one of these")
    return value


def milvus_metric(similarity: str) -> str:
    """The Milvus metric a collection of this similarity is indexed and searched with."""
    return "IP" if similarity == "dot" else "L2"


def distances(vectors: np.ndarray, query: np.ndarray, similarity: str) -> np.ndarray:
    """"Smaller is better" distance of each row of ``vectors`` [n, d] to ``query`` [d]."""
    if similarity == "dot":
        return -(vectors @ query)
    return np.sum((vectors - query) ** 2, axis=1)


def scores(distances: np.ndarray, similarity: str, offset: float = 0.0) -> np.ndarray:
    """The model's similarity from ``distances``: cosine 1 − d/2 (unit vectors), Euclidean −√d,
    dot −d plus the query's ``offset`` (its μ·q)."""
    d = np.asarray(distances, dtype=np.float64)
    if similarity == "dot":
        return offset - d
    if similarity == "euclidean":
        return -np.sqrt(np.maximum(d, 0.0))
    return 1.0 - d / 2.0


def similarity_matrix(queries: np.ndarray, vectors: np.ndarray, similarity: str) -> np.ndarray:
    """[queries, vectors] similarities, larger is better: what exact search ranks by."""
    dots = queries @ vectors.T
    if similarity != "euclidean":
        return dots  # cosine of unit vectors is their dot product
    squared = (queries**2).sum(1)[:, None] - 2 * dots + (vectors**2).sum(1)[None, :]
    return -np.sqrt(np.maximum(squared, 0.0))
