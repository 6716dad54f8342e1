"""Incremental ingest: passages whose vectors already exist are not embedded again.

A changed file is chunked again, but most of its passages usually are not new: a passage whose text
(hash) was already encoded by this collection's model and codec reuses the archived PCA vector
instead of being embedded again. The index is built on the worker from the changed files' old
shards; rows a changed file no longer produces are deleted by primary key (``part_jobs.stale_pks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpress.infra import storage
from vecpress.tasks.arrays import sorted_lookup
from vecpress.tasks.codec.refine import read_archive
from vecpress.tasks.inputs.records import text_hash


@dataclass
class ReuseIndex:
    """Archived PCA vectors (decoded) by passage-text hash (sorted for binary search)."""

    hashes: np.ndarray
    vectors: np.ndarray

    @classmethod
    def empty(cls) -> ReuseIndex:
        return cls(np.empty(0, np.int64), np.empty((0, 0), np.float32))

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask, row of each hit in this index)."""
        return sorted_lookup(self.hashes, hashes)


@dataclass
class OldPassages:
    """Reusable vectors of what earlier runs stored for a set of files."""

    reuse: ReuseIndex


def read_old_passages(parts: list[tuple[str, str, tuple[str, ...]]]) -> OldPassages:
    """Read (passages, archive, sources) shard pairs earlier runs wrote, keeping ``sources``' rows."""
    hashes, vectors = [], []
    for passages_url, archive_url, sources in parts:
        if not storage.exists(archive_url):
            continue  # the vectors are simply embedded again
        passages = storage.read_parquet(passages_url, columns=["pk", "text", "source"])
        mask = pc.is_in(passages.column("source"), pa.array(sorted(sources)))
        _, stored, refiner = read_archive(archive_url)
        keep = mask.to_numpy(zero_copy_only=False)
        hashes.append(text_hashes(passages.filter(mask)))
        vectors.append(refiner.decode(stored[keep]))
    if not hashes:
        return OldPassages(ReuseIndex.empty())
    all_hashes = np.concatenate(hashes)
    order = np.argsort(all_hashes, kind="stable")
    return OldPassages(ReuseIndex(all_hashes[order], np.concatenate(vectors)[order]))


def text_hashes(passages: pa.Table) -> np.ndarray:
    return np.fromiter((text_hash(t) for t in passages.column("text").to_pylist()), np.int64,
                       count=passages.num_rows)
