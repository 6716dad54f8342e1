"""Ground truth and recall: exact FP32 search over a run's embeddings, streamed shard by shard."""

from __future__ import annotations

import numpy as np

from vecpress.infra import storage
from vecpress.tasks.arrays import read_embeddings
from vecpress.tasks.recall import recall_at_k
from vecpress.tasks.search.searcher import Searcher
from vecpress.tasks.similarity import similarity_matrix


def exact_topk(queries: np.ndarray, embedding_urls: list[str], k: int,
               similarity: str = "cosine") -> np.ndarray:
    """Primary keys of the k nearest passages per query by the model's ``similarity``."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_pks = np.empty((len(queries), 0), dtype=np.int64)
    for url in embedding_urls:
        pks, vectors = read_embeddings(url)
        scores = similarity_matrix(queries, vectors, similarity)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_pks = np.concatenate([best_pks, np.broadcast_to(pks, scores.shape)], axis=1)
        top = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_pks = np.take_along_axis(merged_pks, top, axis=1)
    return best_pks


def own_text_hit_rate(searcher: Searcher, passages_url: str, probes: int = 20, k: int = 3) -> float:
    """Fraction of the first ``probes`` passages of a shard found in the top k by their own text:
    the passage itself or another with exactly its text. Copies of one file hold one text under
    several keys, tied in any search, so which of them ranks first is arbitrary: by key alone
    they would read as misses although their text is found. The hits carry their texts, so this
    costs nothing beyond the probes' own searches. NaN for a shard without passages: no probe,
    nothing measured (not 0%)."""
    table = storage.read_parquet(passages_url, columns=["pk", "text"]).slice(0, probes)
    texts, own = table.column("text").to_pylist(), table.column("pk").to_pylist()
    if not own:
        return float("nan")
    hits = searcher.search(texts, k)
    found = sum(any(h.pk == pk or h.text == text for h in row)
                for pk, text, row in zip(own, texts, hits, strict=True))
    return found / len(own)


def held_out_recall(searcher: Searcher, texts: list[str], embedding_urls: list[str],
                    k: int = 10) -> dict[str, float]:
    """recall@k of the compressed search, with and without rescoring, vs exact FP32 search."""
    queries = searcher.embedder.encode_queries(texts)
    truth = exact_topk(queries, embedding_urls, k, searcher.snapshot.codec.similarity)
    out: dict[str, float] = {}
    for label, rescore in (("rescored", True), ("ANN only", False)):
        found = searcher.search_embeddings(queries, k, rescore=rescore)
        out[f"recall@{k} {label}"] = recall_at_k(truth, [[h.pk for h in row] for row in found], k)
    out["eval queries"] = len(texts)
    return out
