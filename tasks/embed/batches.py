"""Where a batch of passages sorted by token length ends: the token budget (padded rows × longest
row) bounds its memory, and ``model.max_padding`` cuts it where the lengths change, because padding
is computed like text and a smaller batch stays in cache (benchmarks/embed_batches.py)."""

from __future__ import annotations

import numpy as np

SMALLEST_SHARE = 8  # a batch cut where lengths change still holds 1/8 of the token budget


def batch_end(sorted_lengths: np.ndarray, start: int, budget: int,
              max_padding: float | None = None) -> int:
    """End of the batch from ``start``: rows × longest length within ``budget`` (at least one row),
    and with ``max_padding``, no row longer than the first's length × (1 + max_padding) once the
    batch holds ``budget // SMALLEST_SHARE`` tokens: padding is computed like text, and a batch
    of an eighth of the budget still keeps the matrix products efficient.

    Lengths ascend, so rows × longest grows with every row added: a binary search finds the end.
    """
    shortest = int(sorted_lengths[start])
    most = budget // shortest + 1
    window = sorted_lengths[start:start + most]
    padded = np.arange(1, len(window) + 1) * window
    end = max(1, int(np.searchsorted(padded, budget, side="right")))
    if max_padding is not None:
        alike = int(np.searchsorted(window, shortest * (1 + max_padding), side="right"))
        enough = int(np.searchsorted(padded, budget // SMALLEST_SHARE, side="left")) + 1
        end = min(end, max(alike, enough))
    return start + end
