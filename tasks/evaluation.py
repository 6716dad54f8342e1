"""Ground truth and recall: exact FP32 search over a run's embeddings, streamed shard by shard."""

from __future__ import annotations

import numpy as np

from vecpress.tasks.shard_jobs import read_embeddings


def exact_topk(queries: np.ndarray, embedding_urls: list[str], k: int) -> np.ndarray:
    """Primary keys of the k nearest passages (inner product of unit vectors) per query."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_pks = np.empty((len(queries), 0), dtype=np.int64)
    for url in embedding_urls:
        pks, vectors = read_embeddings(url)
        scores = queries @ vectors.T
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_pks = np.concatenate([best_pks, np.broadcast_to(pks, scores.shape)], axis=1)
        top = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_pks = np.take_along_axis(merged_pks, top, axis=1)
    return best_pks


def recall_at_k(truth: np.ndarray, found: list[list[int]], k: int) -> float:
    """Mean fraction of each query's true top-k that the search returned in its top k."""
    if len(truth) == 0:
        return float("nan")
    hits = [len(set(t[:k].tolist()) & set(f[:k])) / min(k, len(t)) for t, f in
            zip(truth, found, strict=True)]
    return float(np.mean(hits))
