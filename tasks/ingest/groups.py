"""Shard groups: the files a run reads, cut into groups whose ids say exactly what they hold.

A group's id is a hash of its files' URLs and content hashes and of every setting that changes
its passages (input reading, chunking, the model artifact, rows per shard). The same files read
with the same settings give the same id, so a rerun finds in the catalog what an earlier,
interrupted run already committed for it. Groups are cut from the URL-sorted file list, closed at
``inputs.files_per_shard`` files or ``inputs.bytes_per_shard`` bytes: when whole groups are done,
the remaining files regroup into the same groups. Each group is chunked into parts of at most
``model.passages_per_shard`` passages; a part (``<group_id>/NNNN``) is the unit of embedding,
encoding, loading and commit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from vecpress.infra.settings import Settings
from vecpress.tasks.inputs.records import SourceFile


@dataclass(frozen=True)
class Group:
    group_id: str
    files: tuple[SourceFile, ...]


def group_id(files: list[SourceFile], hashes: dict[str, str], settings: Settings,
             artifact: str) -> str:
    key = {"files": [(f.url, hashes[f.url]) for f in files],
           "inputs": settings.inputs.model_dump(mode="json"),
           "chunk": settings.chunk.model_dump(mode="json"), "model": artifact,
           "rows": settings.model.passages_per_shard}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def make_groups(files: list[SourceFile], hashes: dict[str, str], settings: Settings,
                artifact: str, shuffle_seed: int | None = None) -> list[Group]:
    """Groups of the files to read; with ``shuffle_seed``, in a random (reproducible) order so
    that the first groups done are a fair sample of the corpus (a first run fits its codec on
    them)."""
    groups = [Group(group_id(members, hashes, settings, artifact), tuple(members))
              for members in _cut(sorted(files, key=lambda f: f.url), settings)]
    if shuffle_seed is not None and len(groups) > 1:
        order = np.random.default_rng(shuffle_seed).permutation(len(groups))
        groups = [groups[i] for i in order]
    return groups


def _cut(ordered: list[SourceFile], settings: Settings) -> list[list[SourceFile]]:
    """Greedy groups in URL order, closed at ``files_per_shard`` files or ``bytes_per_shard``
    bytes. A group's end depends only on where it starts, so when whole groups are done, the
    files left regroup into the same groups."""
    groups: list[list[SourceFile]] = []
    current: list[SourceFile] = []
    size = 0
    for src in ordered:
        current.append(src)
        size += src.size
        if len(current) >= settings.inputs.files_per_shard or \
                size >= settings.inputs.bytes_per_shard:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def shard_id(group: str, part: int) -> str:
    return f"{group}/{part:04d}"
