"""The manifest of processed inputs, and the plan of what an incremental run must do.

One row per input file ever ingested into a collection: its size, modification stamp, content
hash, the codec and run that encoded it, and the (passages, archive) shard pairs holding its
passages. Comparing it with what is on disk now gives new, changed, unchanged and deleted files;
only new and changed files are read again, and a changed modification stamp with identical content
is not a change.
"""

from __future__ import annotations

import fnmatch
import hashlib
from dataclasses import dataclass, field

import pyarrow as pa
from fsspec.core import url_to_fs

from vecpress.infra import storage
from vecpress.tasks.inputs.records import InputError, SourceFile

HASH_BLOCK = 1 << 20

MANIFEST_SCHEMA = pa.schema([
    ("path", pa.string()),
    ("size", pa.int64()),
    ("modified", pa.string()),
    ("content_hash", pa.string()),
    ("codec_id", pa.string()),
    ("run_id", pa.string()),
    ("passages", pa.int64()),
    ("passage_parts", pa.list_(pa.string())),
    ("archive_parts", pa.list_(pa.string())),
])


@dataclass
class FileEntry:
    path: str
    size: int
    modified: str
    content_hash: str
    codec_id: str
    run_id: str
    passages: int = 0
    passage_parts: list[str] = field(default_factory=list)
    archive_parts: list[str] = field(default_factory=list)

    def parts(self) -> list[tuple[str, str]]:
        return list(zip(self.passage_parts, self.archive_parts, strict=True))


class Manifest:
    """Processed inputs of one collection, keyed by URL."""

    def __init__(self, entries: dict[str, FileEntry] | None = None) -> None:
        self.entries = entries or {}

    @classmethod
    def load(cls, url: str) -> Manifest:
        if not storage.exists(url):
            return cls()
        rows = storage.read_parquet(url).to_pylist()
        return cls({row["path"]: FileEntry(**row) for row in rows})

    def save(self, url: str) -> None:
        rows = [vars(e) for e in sorted(self.entries.values(), key=lambda e: e.path)]
        storage.write_parquet(url, pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA))

    def __len__(self) -> int:
        return len(self.entries)

    def record_run(self, plan: ChangePlan, written: dict[tuple[str, str], dict[str, set[int]]],
                   codec_id: str, run_id: str) -> None:
        """Record what a run wrote: each read file's shard pairs and row count; drop deleted files.

        ``written`` maps each (passages, archive) shard pair to the primary keys it holds per
        source file. A read file that produced no rows is left out, so the next run reads (and
        reports) it again until it is fixed.
        """
        parts_of: dict[str, list[tuple[str, str]]] = {}
        rows_of: dict[str, int] = {}
        for pair, sources in written.items():
            for source, pks in sources.items():
                parts_of.setdefault(source, []).append(pair)
                rows_of[source] = rows_of.get(source, 0) + len(pks)
        for src in plan.to_read:
            self.entries.pop(src.url, None)
            if not rows_of.get(src.url):
                continue
            parts = parts_of.get(src.url, [])
            self.entries[src.url] = FileEntry(
                path=src.url, size=src.size, modified=src.modified,
                content_hash=plan.hashes[src.url], codec_id=codec_id, run_id=run_id,
                passages=rows_of[src.url], passage_parts=[p for p, _ in parts],
                archive_parts=[a for _, a in parts])
        for path in plan.deleted:
            self.entries.pop(path, None)


@dataclass
class ChangePlan:
    """What an incremental run has to do, file by file."""

    new: list[SourceFile] = field(default_factory=list)
    changed: list[SourceFile] = field(default_factory=list)
    unchanged: list[SourceFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # content hash of every new/changed file

    @property
    def to_read(self) -> list[SourceFile]:
        return self.new + self.changed

    @property
    def is_empty(self) -> bool:
        return not (self.new or self.changed or self.deleted)

    def counts(self) -> dict[str, int]:
        return {"new": len(self.new), "changed": len(self.changed),
                "unchanged": len(self.unchanged), "deleted": len(self.deleted)}


def content_hash(url: str) -> str:
    """SHA-256 of a file's bytes, streamed (any fsspec URL)."""
    fs, path = url_to_fs(url)
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def source_scope(given: str) -> str:
    """The URL prefix (or glob) a source argument covers, in the form discovered files carry."""
    fs, root = url_to_fs(given)
    return fs.unstrip_protocol(root.rstrip("/"))


def in_scope(path: str, scope: str) -> bool:
    if any(ch in scope for ch in "*?["):
        return fnmatch.fnmatch(path, scope) or fnmatch.fnmatch(path, scope + "/*")
    return path == scope or path.startswith(scope + "/")


def plan_changes(sources: list[str], files: list[SourceFile], errors: list[InputError],
                 manifest: Manifest, reread_all: bool = False) -> tuple[ChangePlan, list[InputError]]:
    """Compare discovered files with the manifest (``reread_all``: every known file is changed).

    A manifest entry inside the scope of ``sources`` that was not discovered is deleted; a named
    source that no longer exists is a deletion, not an input error, when the manifest knows it.
    Returns the plan and the input errors that remain errors.
    """
    plan = ChangePlan()
    for src in files:
        known = manifest.entries.get(src.url)
        if known and known.size == src.size and known.modified == src.modified and not reread_all:
            plan.unchanged.append(src)
            continue
        digest = content_hash(src.url)
        if known is None:
            plan.new.append(src)
        elif known.content_hash == digest and not reread_all:
            plan.unchanged.append(src)
            known.size, known.modified = src.size, src.modified  # same bytes, new stamp
            continue
        else:
            plan.changed.append(src)
        plan.hashes[src.url] = digest
    seen = {f.url for f in files}
    scopes = {given: source_scope(given) for given in sources}
    for path in manifest.entries:
        if path not in seen and any(in_scope(path, s) for s in scopes.values()):
            plan.deleted.append(path)
    deleted = set(plan.deleted)
    remaining = [e for e in errors
                 if not (e.source in scopes and any(in_scope(p, scopes[e.source]) for p in deleted))]
    return plan, remaining
