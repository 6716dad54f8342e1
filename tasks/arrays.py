"""Array helpers every stage shares: numpy matrices as Arrow columns, embeddings shards, lookups
in sorted keys.

Kept apart from the stages that use them, so that reading an archive or an embeddings shard never
imports the codec (FAISS), and so that the two sorted-key lookups (reuse cache, rescoring store)
are one function.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from vecpress.infra import storage


def numpy_to_fixed_list(matrix: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    """A FixedSizeList column (one row per matrix row) without Python objects."""
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), value_type),
                                             matrix.shape[1])


def fixed_list_to_numpy(column: pa.ChunkedArray | pa.Array, dtype: type) -> np.ndarray:
    """[n, width] array from a FixedSizeList column without Python objects."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.list_size
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=dtype).reshape(-1, width) if len(arr) else \
        np.empty((0, width), dtype=dtype)


def sorted_lookup(sorted_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(found mask over ``keys``, position in ``sorted_keys`` of each found key).

    ``sorted_keys`` ascends (a numpy array or a memory map); a binary search per key.
    """
    keys = np.asarray(keys, dtype=np.int64)
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool), np.empty(0, np.int64)
    pos = np.clip(np.searchsorted(sorted_keys, keys), 0, len(sorted_keys) - 1)
    found = np.asarray(sorted_keys[pos]) == keys
    return found, pos[found]


def read_embeddings(url: str) -> tuple[np.ndarray, np.ndarray]:
    """(pks, float32 [n, dim]) of an embeddings shard (columns ``pk`` and ``embedding``)."""
    table = storage.read_parquet(url)
    return table.column("pk").to_numpy(), fixed_list_to_numpy(table.column("embedding"),
                                                              np.float32)
