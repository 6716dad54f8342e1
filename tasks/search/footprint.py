"""What a collection costs, in bytes per passage, tier by tier, measured rather than computed.

Each figure comes from the files themselves (one listing of the collection's folder on the
storage root, the local rescoring store, a Milvus Lite data directory) or from the Milvus
server's own figures, never from settings: a nominal figure hides what an index, a file format or
a forgotten copy really costs, and paying for RAM and disk at 100M passages is paying for these.

Tiers:
- RAM while serving: Milvus's loaded collection, and the rescoring store the search host maps
  (resident as far as searches touch it, all of it when hot);
- at rest in Milvus: the rows' field data and the index files;
- at rest on the storage root: each kind of file (the run logs and a run's lease apart: they
  grow with runs, not passages);
- at rest on the search host: the rescoring store, when it lives outside the storage root (an
  object-store root keeps it in the user cache).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vecpress.infra import storage
from vecpress.tasks.search.opening import rescore_directory
from vecpress.tasks.search.rescore_store import cache_directory, current_version, version_bytes

if TYPE_CHECKING:
    from vecpress.infra.milvus_reads import MilvusReads
    from vecpress.infra.settings import Settings

RUN_LOGS = "run logs"
LEASE = "lease (while a run holds it)"
APART = {RUN_LOGS, LEASE}  # on the root, but no cost of the passages: left out of the total
PASSAGES = "passage shards (text, metadata)"
RESCORE = "rescoring store (mapped codes)"
SHARD_KINDS = {"part-": PASSAGES, "archive-": "archive (rescoring codes)",
               "tokens-": "token ids (until embedded)",
               "embeddings-": "FP32 embeddings (until encoded)"}
TOP_KINDS = {"rescore": RESCORE, "codecs": "codecs", "runs": RUN_LOGS, "lease": LEASE}
BOOKKEEPING = "catalog and bookkeeping"


def storage_kind(relative: str) -> str:
    """The kind of a file of the collection's folder, from its path relative to that folder."""
    top, name = relative.split("/", 1)[0], posixpath.basename(relative)
    if top == "shards":
        return next((kind for prefix, kind in SHARD_KINDS.items() if name.startswith(prefix)),
                    BOOKKEEPING)
    return TOP_KINDS.get(top, BOOKKEEPING)


def storage_bytes(collection_root: str) -> dict[str, int]:
    """Bytes of the collection's folder on the storage root by kind of file (one listing)."""
    out: dict[str, int] = {}
    for relative, size in storage.sizes(collection_root).items():
        kind = storage_kind(relative)
        out[kind] = out.get(kind, 0) + size
    return out


def rescore_bytes(directory: Path | None) -> tuple[int, int] | None:
    """(bytes the rescoring store in ``directory`` keeps, bytes its searches map: its index and
    every code it reads, in the archive shards or its own copies); None when there is none there:
    this host has not built it."""
    if directory is None:
        return None
    version, manifest = current_version(directory)
    return None if version is None else version_bytes(version, manifest)


@dataclass(frozen=True)
class Footprint:
    """Bytes of one build, by tier and kind, and the passages they hold."""

    passages: int
    ram: dict[str, int] = field(default_factory=dict)
    milvus: dict[str, int] = field(default_factory=dict)
    storage: dict[str, int] = field(default_factory=dict)
    search_host: dict[str, int] = field(default_factory=dict)

    def tiers(self) -> dict[str, dict[str, int]]:
        return {"RAM while serving": self.ram, "at rest in Milvus": self.milvus,
                "at rest on the storage root": self.storage,
                "at rest on the search host": self.search_host}

    def at_rest(self) -> int:
        """Every byte kept at rest for the collection, the run logs and the lease apart."""
        kept = {k: v for k, v in self.storage.items() if k not in APART}
        return sum(self.milvus.values()) + sum(kept.values()) + sum(self.search_host.values())

    def per_passage(self, n: int) -> float | None:
        """``n`` bytes per passage, to 0.1 byte (None for an empty build)."""
        return round(n / self.passages, 1) if self.passages else None

    def to_dict(self) -> dict[str, Any]:
        """The bytes and the bytes per passage of each tier and kind, and the totals."""
        tiers = {tier: {"bytes": kinds, "bytes_per_passage": {
            kind: self.per_passage(n) for kind, n in kinds.items()}}
            for tier, kinds in self.tiers().items() if kinds}
        return {"passages": self.passages, "tiers": tiers, "totals_per_passage": {
            "RAM while serving": self.per_passage(sum(self.ram.values())),
            "at rest, all tiers (run logs apart)": self.per_passage(self.at_rest()),
            "of which text and metadata (passage shards)":
                self.per_passage(self.storage.get(PASSAGES, 0))}}


def measure_footprint(collection_root: str, reads: MilvusReads, build: str,
                      rescore_directory: Path | None) -> Footprint:
    """The footprint of ``build``: Milvus's figures for it, the collection's folder on the storage
    root, and the rescoring store in ``rescore_directory`` (where the search host keeps it; left
    out when this host has none)."""
    rescore = rescore_bytes(rescore_directory)
    mapped = {} if rescore is None else {f"{RESCORE}, memory-mapped": rescore[1]}
    root = collection_root.removeprefix("file://")
    outside = rescore_directory is not None and (
        "://" in root or not rescore_directory.resolve().is_relative_to(Path(root).resolve()))
    return Footprint(
        passages=reads.count(build), ram=reads.loaded_bytes(build) | mapped,
        milvus=reads.stored_bytes(build), storage=storage_bytes(collection_root),
        search_host={RESCORE: rescore[0]} if outside and rescore is not None else {})


def measure_collection(settings: Settings, reads: MilvusReads, build: str) -> Footprint:
    """The footprint of the collection's ``build``, its rescoring store where this host keeps it
    (``<collection>/rescore/<build>`` on a local root, else the user cache)."""
    paths = storage.CollectionPaths(settings.storage_root, settings.collection)
    directory = rescore_directory(paths, build) or cache_directory(paths.root)
    return measure_footprint(paths.root, reads, build, directory)
