"""IVF list counts: one rule for the Milvus index and for the codec's auto-tune that simulates it.

Pure arithmetic, so that codec tuning need not import the Milvus client.
"""

from __future__ import annotations

import math

MAX_NLIST = 65_536
MIN_POINTS_PER_LIST = 39  # FAISS's k-means threshold: fewer points leave centroids undertrained


def default_nlist(rows: int) -> int:
    """IVF lists for ``rows`` vectors: about 4·√rows, at least 8, at most 65,536, and never more
    than rows / 39, so that each list's centroid is trained on enough points."""
    nlist = min(max(4 * math.sqrt(max(rows, 1)), 8), MAX_NLIST, rows // MIN_POINTS_PER_LIST or 1)
    return int(max(1, nlist))
