"""Overlap of neighbour lists: the one recall measure behind export fidelity, auto-tune and search.

recall@k = the mean fraction of each query's true top k that another search returned in its top k.
Pure numpy, so the codec's auto-tune can measure recall without importing the embedder or Milvus.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at_k(truth: np.ndarray | Sequence[Sequence[int]], found: np.ndarray | Sequence[Sequence[int]],
                k: int) -> float:
    """Mean fraction of each query's true top-k ids (``truth``) found in the top k of ``found``."""
    if len(truth) == 0:
        return float("nan")
    hits = [len(set(np.asarray(t)[:k].tolist()) & set(np.asarray(f)[:k].tolist())) / min(k, len(t))
            for t, f in zip(truth, found, strict=True)]
    return float(np.mean(hits))


def neighbour_recall(reference: np.ndarray, other: np.ndarray, k: int = 10) -> float:
    """recall@k of each vector's k nearest neighbours (within the set) under ``other`` vs ``reference``."""
    k = min(k, len(reference) - 1)
    if k < 1:
        return 1.0

    def knn(x: np.ndarray) -> np.ndarray:
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    return recall_at_k(knn(reference), knn(other), k)
