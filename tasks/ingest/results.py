"""What a streaming run is given (the groups to read, the old shards of changed and deleted
files) and what it returns (counts, busy seconds per stage, the codec, a drift sample)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.catalog import Build
from vecpress.tasks.ingest.groups import Group
from vecpress.tasks.ingest.part_jobs import EmbeddedPart, LoadedPart, OldPart
from vecpress.tasks.inputs.records import InputError


@dataclass
class StreamJob:
    """What one run streams into one build."""

    build: Build
    groups: list[Group]
    hashes: dict[str, str]  # content hash of every file to read
    old_parts: dict[str, list[OldPart]] = field(default_factory=dict)  # per group: changed files
    deleted: list[OldPart] = field(default_factory=list)  # old shards of deleted files
    deleted_paths: list[str] = field(default_factory=list)
    restamped: list[dict] = field(default_factory=list)  # files rows: same bytes, new stamp
    serving: str = ""  # the build serving the name while this one is written ("" if none)

    @property
    def input_bytes(self) -> int:
        """Bytes of the files this run reads (its size, before anything is chunked)."""
        return sum(f.size for group in self.groups for f in group.files)


@dataclass
class StreamResult:
    documents: int = 0
    passages: int = 0
    embedded: int = 0
    reused: int = 0
    truncated: int = 0
    rows_written: int = 0
    rows_bulk_imported: int = 0  # of rows_written, by Milvus bulk import
    rows_deleted: int = 0
    shards: int = 0
    shards_skipped: int = 0  # already loaded before this run
    shards_resumed: int = 0  # part-way done before this run
    busy: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("chunk", "embed", "encode", "load"), 0.0))
    wall: float = 0.0
    errors: list[InputError] = field(default_factory=list)
    codec: Codec | None = None
    codec_trained: bool = False
    codec_lines: list[str] = field(default_factory=list)
    codec_seconds: float = 0.0
    curve_seconds: float = 0.0  # the codec's recall-vs-bytes curve, beside the stream
    drift_sample: list[np.ndarray] = field(default_factory=list)
    fp32_urls: list[str] = field(default_factory=list)  # first-run FP32 shards (deleted by GC)
    first_passages: str | None = None
    notes: list[str] = field(default_factory=list)  # for the run's log (bulk-import fallbacks)

    def drift_vectors(self) -> np.ndarray:
        return np.concatenate(self.drift_sample)

    # What each finished step adds (the engine calls these as the steps land).

    def add_group(self, meta: dict) -> None:
        """A chunked group (``shard_jobs.group_meta``), chunked by this run or found on resume."""
        self.documents += meta["documents"]
        self.passages += sum(meta["rows"])
        self.shards += len(meta["urls"])
        self.errors += [InputError(**e) for e in meta["errors"]]
        self.first_passages = self.first_passages or next(iter(meta["urls"]), None)

    def add_embedded(self, done: EmbeddedPart) -> None:
        self.busy["embed"] += done.seconds
        self.embedded += done.embedded
        self.reused += done.reused
        self.truncated += done.truncated
        if len(done.sample):
            self.drift_sample.append(done.sample)
        if not done.encoded:
            self.fp32_urls.append(done.url)

    def add_loaded(self, done: LoadedPart) -> None:
        self.rows_written += done.written
        self.rows_bulk_imported += done.written if done.bulk else 0
        if done.note:
            self.notes.append(done.note)
        self.busy["load"] += done.seconds
        self.errors += [InputError(**e) for e in done.refused]


