"""Incremental ingest: Milvus rows to delete, and passages whose vectors already exist.

A changed file is chunked again, but most of its passages usually are not new: a passage whose text
(hash) was already encoded by this collection's model and codec reuses the archived fp16 PCA vector
instead of being embedded again. Rows of deleted files, and rows a changed file no
longer produces, are deleted from Milvus by primary key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpress.infra import storage
from vecpress.tasks.arrays import fixed_list_to_numpy, numpy_to_fixed_list, sorted_lookup
from vecpress.tasks.collection.manifest import FileEntry
from vecpress.tasks.inputs.records import text_hash


@dataclass
class ReuseIndex:
    """Archived vectors by passage-text hash (sorted for binary search)."""

    hashes: np.ndarray
    pca_fp16: np.ndarray

    @classmethod
    def empty(cls) -> ReuseIndex:
        return cls(np.empty(0, np.int64), np.empty((0, 0), np.float16))

    def __len__(self) -> int:
        return len(self.hashes)

    def find(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(hit mask, row of each hit in this index)."""
        return sorted_lookup(self.hashes, hashes)


@dataclass
class OldPassages:
    """What earlier runs stored for a set of files: their primary keys and reusable vectors."""

    pks_by_source: dict[str, set[int]]
    reuse: ReuseIndex


def read_old_passages(entries: list[FileEntry]) -> OldPassages:
    """Read the shards earlier runs wrote for ``entries`` (each shard once)."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        for pair in entry.parts():
            wanted.setdefault(pair, set()).add(entry.path)
    pks_by_source: dict[str, set[int]] = {e.path: set() for e in entries}
    hashes, vectors = [], []
    for (passages_url, archive_url), sources in wanted.items():
        passages = storage.read_parquet(passages_url, columns=["pk", "text", "source"])
        mask = pc.is_in(passages.column("source"), pa.array(sorted(sources))).to_numpy(
            zero_copy_only=False)
        rows = passages.filter(pa.array(mask))
        _add_pks(pks_by_source, rows)
        if not storage.exists(archive_url):
            continue  # the pks still get deleted; the vectors are simply embedded again
        archive = storage.read_parquet(archive_url, columns=["pk", "pca_fp16"]).filter(pa.array(mask))
        hashes.append(_text_hashes(rows))
        vectors.append(fixed_list_to_numpy(archive.column("pca_fp16"), np.float16))
    if not hashes:
        return OldPassages(pks_by_source, ReuseIndex.empty())
    all_hashes = np.concatenate(hashes)
    order = np.argsort(all_hashes, kind="stable")
    return OldPassages(pks_by_source, ReuseIndex(all_hashes[order], np.concatenate(vectors)[order]))


@dataclass
class ShardSplit:
    """One passages shard after the cache lookup."""

    to_embed: str | None  # passages still to embed (the original URL when nothing was reused)
    reused: tuple[str, str] | None  # (passages, archive) pair of reused rows, ready to load
    reused_rows: int = 0


def split_shard(passages_url: str, index: ReuseIndex, out_prefix: str) -> ShardSplit:
    """Separate passages with an archived vector (written as a ready archive) from the rest."""
    table = storage.read_parquet(passages_url)
    hit, rows = index.find(_text_hashes(table))
    if not hit.any():
        return ShardSplit(passages_url, None)
    reused_passages = table.filter(pa.array(hit))
    pairs = (f"{out_prefix}-reused.parquet", f"{out_prefix}-reused-archive.parquet")
    storage.write_parquet(pairs[0], reused_passages)
    storage.write_parquet(pairs[1], pa.table({
        "pk": reused_passages.column("pk"),
        "pca_fp16": numpy_to_fixed_list(index.pca_fp16[rows], pa.float16()),
    }))
    to_embed = None
    if not hit.all():
        to_embed = f"{out_prefix}-embed.parquet"
        storage.write_parquet(to_embed, table.filter(pa.array(~hit)))
    return ShardSplit(to_embed, pairs, int(hit.sum()))


def pks_by_source(passage_urls: list[str]) -> dict[str, set[int]]:
    """Primary keys each source file produced in this run's passage shards."""
    out: dict[str, set[int]] = {}
    for url in passage_urls:
        _add_pks(out, storage.read_parquet(url, columns=["pk", "source"]))
    return out


def _add_pks(out: dict[str, set[int]], passages: pa.Table) -> None:
    """Add each row's pk to the set of its source file."""
    for source, pk in zip(passages.column("source").to_pylist(), passages.column("pk").to_pylist(),
                          strict=True):
        out.setdefault(source, set()).add(pk)


def _text_hashes(passages: pa.Table) -> np.ndarray:
    return np.fromiter((text_hash(t) for t in passages.column("text").to_pylist()), np.int64,
                       count=passages.num_rows)


def merge_pks(per_pair: Iterable[dict[str, set[int]]]) -> dict[str, set[int]]:
    """One source → primary keys map from several shard pairs' maps."""
    merged: dict[str, set[int]] = {}
    for sources in per_pair:
        for source, pks in sources.items():
            merged.setdefault(source, set()).update(pks)
    return merged


def stale_pks(old: dict[str, set[int]], new: dict[str, set[int]]) -> list[int]:
    """Rows of the old files that the new run does not write again (deleted files: all rows)."""
    stale: set[int] = set()
    for source, pks in old.items():
        stale |= pks - new.get(source, set())
    return sorted(stale)
