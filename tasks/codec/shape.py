"""The shape of a codec for a sample: PCA dimension, M, the width Milvus holds, the held-out rows.

Kept apart from the codec itself so that the auto-tune, the codec choice and the fit share one
rule for each, and so that ``codec.py`` stays about the FAISS index.
"""

from __future__ import annotations

import numpy as np

from vecpress.infra.settings import CodecSettings


def resolve_shape(sample: np.ndarray, codec: CodecSettings) -> CodecSettings:
    """``codec`` with a concrete PCA dimension and an M that divides it, for this sample.

    Without ``codec.pca_dim`` the dimension keeps ``codec.pca_variance`` of the sample's variance,
    rounded up to a multiple of M, at least ``codec.pca_min_dim``: text unlike the docstrings
    the old fixed 256 was tuned on spreads its variance wider (short quotations needed 320 of 384
    dimensions for exact search in PCA space to find 98% of the true top-10, docstrings 300).
    Never more than the embedding dimension or the sample allows; a model narrower than the
    default needs no setting changed (M shrinks to a divisor of the dimension).
    """
    if codec.pca_dim is not None:  # configured: kept as it is (fit_codec checks it)
        return codec
    d_in = sample.shape[1]
    train_rows = len(split_holdout(sample[:, :1], codec.seed)[0])  # what PCA is fitted on
    centred = sample - sample.mean(axis=0)
    eig = np.linalg.eigvalsh(centred.T.astype(np.float64) @ centred)[::-1]
    share = np.cumsum(eig) / max(float(eig.sum()), 1e-12)
    keep = int(np.searchsorted(share, codec.pca_variance) + 1)
    dim = -(-max(keep, codec.pca_min_dim) // codec.pq_m) * codec.pq_m
    dim = max(1, min(dim, d_in, train_rows - 1))
    return codec.model_copy(update={"pca_dim": dim, "pq_m": largest_divisor(dim, codec.pq_m)})


def largest_divisor(dim: int, at_most: int) -> int:
    """The largest M ≤ ``at_most`` that divides ``dim`` (Milvus's IVF_PQ needs M | dim)."""
    return max(m for m in range(1, min(at_most, dim) + 1) if dim % m == 0)


def milvus_width(settings: CodecSettings) -> int:
    """``codec.milvus_dim`` for a resolved shape: capped at the PCA dim, rounded down to a
    multiple of M (a server's IVF_PQ splits the stored vector into M parts)."""
    dim = int(settings.pca_dim or 0)
    wanted = settings.milvus_dim
    if wanted is None or wanted >= dim:
        return dim
    return max(settings.pq_m, wanted // settings.pq_m * settings.pq_m)


HOLDOUT_MIN_SAMPLE = 1000  # smaller samples are all used for training (and errors measured on them)
HOLDOUT_MAX = 2000


def split_holdout(sample: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, rows held out to measure errors): 10% of the sample, at most 2,000."""
    n = len(sample)
    if n < HOLDOUT_MIN_SAMPLE:
        return sample, sample
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).choice(n, size=min(n // 10, HOLDOUT_MAX), replace=False)] = True
    return np.ascontiguousarray(sample[~held]), np.ascontiguousarray(sample[held])
