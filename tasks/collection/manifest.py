"""The manifest of processed inputs, and the plan of what an incremental run must do.

One row per input file ingested into a build of a collection (the catalog's ``files`` table): its
size, modification stamp, content hash, and the shard group holding its passages. Comparing it
with what is on disk now gives new, changed, unchanged and deleted files; only new and changed
files are read again, and a changed modification stamp with identical content is not a change.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
from dataclasses import dataclass, field, replace

import pyarrow as pa
from fsspec.core import url_to_fs

from vecpress.tasks.inputs.records import InputError, SourceFile
from vecpress.tasks.inputs.sources import cannot_list

HASH_BLOCK = 1 << 20


@dataclass
class FileEntry:
    """One input file as the catalog's ``files`` table records it for a build."""

    path: str
    size: int
    modified: str
    content_hash: str
    group_id: str
    passages: int = 0
    run_id: str = ""


class Manifest:
    """Processed inputs of one build, keyed by URL (a view of the catalog's ``files`` table)."""

    def __init__(self, entries: dict[str, FileEntry] | None = None) -> None:
        self.entries = entries or {}

    @classmethod
    def from_table(cls, files: pa.Table) -> Manifest:
        fields = [f.name for f in dataclasses.fields(FileEntry)]
        return cls({row["path"]: FileEntry(**{k: row[k] for k in fields})
                    for row in files.to_pylist()})

    def __len__(self) -> int:
        return len(self.entries)

    def groups_of(self, paths: list[str]) -> dict[str, list[str]]:
        """Shard group → which of ``paths`` it holds rows of."""
        out: dict[str, list[str]] = {}
        for path in paths:
            out.setdefault(self.entries[path].group_id, []).append(path)
        return out


@dataclass
class ChangePlan:
    """What an incremental run has to do, file by file."""

    new: list[SourceFile] = field(default_factory=list)
    changed: list[SourceFile] = field(default_factory=list)
    unchanged: list[SourceFile] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)  # content hash of every new/changed file
    restamped: list[str] = field(default_factory=list)  # same bytes, new stamp: record the stamp

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

    A manifest entry inside the scope of ``sources`` that was not discovered is deleted, where the
    source still lists. A file named on its own that no longer exists is a deletion, not an
    input error, when the manifest knows it. A folder, prefix or pattern that no longer exists or
    cannot be listed (a typo, an unmounted drive, expired credentials) deletes nothing: its files
    are kept and the error stays, saying so (a missing folder had wiped the collection, exit 0).
    Returns the plan and the input errors that remain errors.
    """
    plan = ChangePlan()
    for src in files:
        known = manifest.entries.get(src.url)
        if known and known.size == src.size and known.modified == src.modified and not reread_all:
            plan.unchanged.append(src)
            continue
        try:
            digest = content_hash(src.url)
        except OSError as exc:  # a symlink loop, no permission, gone since it was listed
            errors = [*errors, InputError(src.url, "", f"cannot read file: {exc}",
                                          "check the file's permissions and links")]
            continue
        if known is None:
            plan.new.append(src)
        elif known.content_hash == digest and not reread_all:
            plan.unchanged.append(src)
            known.size, known.modified = src.size, src.modified  # same bytes, new stamp
            plan.restamped.append(src.url)
            continue
        else:
            plan.changed.append(src)
        plan.hashes[src.url] = digest
    seen = {f.url for f in files}
    scopes = {given: source_scope(given) for given in sources}
    for path in manifest.entries:
        if path not in seen and any(in_scope(path, s) for s in scopes.values()):
            plan.deleted.append(path)
    remaining = []
    for error in errors:
        scope = scopes.get(error.source)
        gone = [p for p in plan.deleted if scope is not None and in_scope(p, scope)]
        if gone == [scope]:  # a file named on its own, deleted
            continue
        if gone and cannot_list(error):
            plan.deleted = [p for p in plan.deleted if p not in gone]
            error = replace(error, message=f"{error.message}; the collection's {len(gone):,} "
                            "file(s) from it are kept", hint=KEPT_HINT)
        elif gone:  # it lists, without a readable file: its files were removed
            continue
        remaining.append(error)
    return plan, remaining


KEPT_HINT = ("check the path, mount or credentials; to delete those files' rows, give the "
             "folder back empty, or ingest with --recreate")
