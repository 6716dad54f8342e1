"""A bounded in-process cache of query embeddings: a repeated query skips the model.

Keys are 16-byte BLAKE2b digests of the text, so the cache's size is entries × (dim × 4 + ~100)
bytes whatever the texts are. It belongs to one build: a search on another build (an ingest or a
rebuild switched the alias, possibly to another model) empties it first. Thread-safe; the model
runs outside the lock, so two threads may embed the same new text once each.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

Encode = Callable[[list[str]], np.ndarray]


def _key(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class QueryEmbeddingCache:
    """LRU of query embeddings for one build; ``size`` 0 disables it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = self.misses = 0
        self._build = ""
        self._vectors: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: list[str], build: str, encode: Encode) -> np.ndarray:
        """Embeddings of ``texts`` in order, float32 [n, dim]: cached ones, and the others from
        ``encode`` (each distinct new text once), which are then kept."""
        if self.size == 0 or not texts:
            return encode(texts)
        keys = [_key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            if build != self._build:
                self._vectors.clear()
                self._build = build
            for key in keys:
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[key] = vector
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if missing:
            new = encode(list(missing.values()))
            # copies: a row view would keep its whole batch alive in the cache
            fresh = {key: row.copy() for key, row in zip(missing, new, strict=True)}
            found.update(fresh)
            with self._lock:
                if build == self._build:
                    for key, vector in fresh.items():
                        self._vectors[key] = vector
                        self._vectors.move_to_end(key)
                    while len(self._vectors) > self.size:
                        self._vectors.popitem(last=False)
        with self._lock:
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)
