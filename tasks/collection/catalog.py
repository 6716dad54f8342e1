"""One catalog per collection: Delta Lake tables whose commits are atomic.

Why Delta Lake (``deltalake``, delta-rs): every commit is one new JSON entry in the table's
``_delta_log`` written with put-if-absent, so a reader sees the previous or the next version of a
table and never half of one, on a local path and on object stores alike; a crash or a full disk
during a commit leaves the last committed version readable. No hand-written rename dance, no
in-place Parquet rewrites. Three small tables under ``collections/<name>/catalog/``:

- ``builds``: each physical Milvus collection ("build") of this name, with its codec, model
  artifact and chunking, and where it lives (Milvus URI, model cache); the one with status
  ``active`` serves the name. A rebuild is a new build that becomes active in one commit when it
  is complete.
- ``files``: the manifest, one row per (build, input file): size, stamp, content hash, and the
  shard group holding its passages.
- ``shards``: the ledger, one row per (build, shard): how far it got (chunked → embedded →
  encoded → loaded) and the Parquet files it wrote. A resumed run skips what is committed here.

Files under the collection's folder are stored relative to it, so the catalog stays valid when
the storage root is moved or read from another working directory; callers see full URLs.

Reads go through DataFusion (``QueryBuilder``), which also keeps the process exit clean.
"""

from __future__ import annotations

import errno
import json
import posixpath
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, QueryBuilder, write_deltalake
from deltalake.exceptions import TableNotFoundError

from vecpress.infra import storage

BUILDS = pa.schema([("build", pa.string()), ("status", pa.string()), ("codec_id", pa.string()),
                    ("model_artifact", pa.string()), ("model_variant", pa.string()),
                    ("chunking", pa.string()), ("run_id", pa.string()), ("updated", pa.string()),
                    ("milvus_uri", pa.string()), ("model_cache", pa.string()),
                    ("index", pa.string())])
FILES = pa.schema([("build", pa.string()), ("path", pa.string()), ("size", pa.int64()),
                   ("modified", pa.string()), ("content_hash", pa.string()),
                   ("group_id", pa.string()), ("passages", pa.int64()), ("run_id", pa.string())])
SHARDS = pa.schema([("build", pa.string()), ("shard_id", pa.string()), ("group_id", pa.string()),
                    ("part", pa.int32()), ("state", pa.string()), ("passages_url", pa.string()),
                    ("embeddings_url", pa.string()), ("archive_url", pa.string()),
                    ("rows", pa.int64()), ("run_id", pa.string())])
KEYS = {"builds": ["build"], "files": ["build", "path"], "shards": ["build", "shard_id"]}
SCHEMAS = {"builds": BUILDS, "files": FILES, "shards": SHARDS}
ADDED = {"builds": ("milvus_uri", "model_cache", "index")}
URL_COLUMNS = {"shards": ("passages_url", "embeddings_url", "archive_url")}
STATES = ("chunked", "embedded", "encoded", "loaded")  # a shard's progress, in order


class CatalogError(RuntimeError):
    """The catalog could not be read or written (the message names the table and the root)."""


@dataclass
class Build:
    """One physical Milvus collection serving (or about to serve) the collection's name."""

    build: str
    status: str  # building / active / retired
    codec_id: str
    model_artifact: str
    model_variant: str
    chunking: str  # JSON of the chunk settings it was read with
    run_id: str
    updated: str = ""
    milvus_uri: str = ""  # where it is served: a server URI (no credentials) or a Lite file
    model_cache: str = ""  # the model cache its artifact is in
    index: str = ""  # JSON of its IndexPlan: index type, nlist, rows, nprobe, rescore factor


@dataclass
class ShardRow:
    """One shard's progress: a bounded part of a group of input files."""

    build: str
    shard_id: str
    group_id: str
    part: int
    state: str
    passages_url: str
    embeddings_url: str
    archive_url: str
    rows: int
    run_id: str


def _commit_error(path: str, exc: Exception) -> Exception:
    """A failed commit, said plainly; a full disk stays an ``OSError(ENOSPC)`` for the caller."""
    message = (f"could not commit to the catalog table {path}: {exc}; the last committed version "
               "is intact: fix the cause and run the same command again")
    if "No space left" in str(exc) or getattr(exc, "errno", None) == errno.ENOSPC:
        return OSError(errno.ENOSPC, message)
    return CatalogError(message)


STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
"""How the catalog stamps a row (``Build.updated``): UTC, microseconds; ``age_s`` reads it back."""


def now() -> str:
    return f"{datetime.now(UTC):{STAMP_FORMAT}}"


def age_s(stamp: str) -> float:
    """Seconds since ``stamp`` (written by ``now``); infinite for an empty or unreadable one, so a
    row without a stamp counts as old enough for garbage collection."""
    try:
        then = datetime.strptime(stamp, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def chunking_key(chunking: dict) -> str:
    return json.dumps(chunking, sort_keys=True)


class Catalog:
    """The Delta tables of one collection; one writer at a time (the ingest lock), many readers."""

    def __init__(self, collection_root: str) -> None:
        root = storage.join(collection_root, "catalog")
        if "://" not in root:
            root = str(Path(root).resolve())
        self.root = root.removeprefix("file://")
        self.collection_root = posixpath.dirname(self.root)

    def _path(self, table: str) -> str:
        return storage.join(self.root, table)

    def _options(self) -> dict[str, str] | None:
        return storage.delta_options(self.root)

    def _is_table(self, table: str) -> bool:
        return DeltaTable.is_deltatable(self._path(table), storage_options=self._options())

    def _table(self, table: str) -> DeltaTable:
        return DeltaTable(self._path(table), storage_options=self._options())

    def exists(self) -> bool:
        return self._is_table("builds")

    def version(self, table: str = "builds") -> int:
        """The table's committed version (-1 before its first commit); cheap, for change checks."""
        try:
            return self._table(table).version()
        except TableNotFoundError:
            return -1

    def read(self, table: str, where: str = "") -> pa.Table:
        """A consistent snapshot of one table (optionally filtered with a SQL condition)."""
        try:
            delta = self._table(table)
        except TableNotFoundError:
            return SCHEMAS[table].empty_table()
        query = QueryBuilder().register("t", delta)
        # Read through the Arrow stream interface: ``pa.table`` first asks whether its argument is
        # a pandas DataFrame, which imports pandas (0.2 s of every command).
        result = pa.RecordBatchReader.from_stream(
            query.execute(f"SELECT * FROM t {'WHERE ' + where if where else ''}")).read_all()
        if not result.num_rows:
            return SCHEMAS[table].empty_table()
        for name in ADDED.get(table, ()):  # columns added since the table was first written
            if name not in result.column_names:
                result = result.append_column(name, pa.array([""] * result.num_rows))
            else:
                column = pc.fill_null(result.column(name).cast(pa.string()), "")
                result = result.set_column(result.column_names.index(name), name, column)
        for name in URL_COLUMNS.get(table, ()):
            full = [self._full_url(v) for v in result.column(name).to_pylist()]
            result = result.set_column(result.column_names.index(name), name, pa.array(full))
        return result.select(SCHEMAS[table].names).cast(SCHEMAS[table])

    def _stored_url(self, url: str) -> str:
        """A file under the collection's folder as a path relative to it; others unchanged."""
        full = url.removeprefix("file://")
        if full and "://" not in full:
            full = str(Path(full).resolve())
        prefix = self.collection_root.rstrip("/") + "/"
        return full[len(prefix):] if full.startswith(prefix) else url

    def _full_url(self, stored: str | None) -> str:
        if not stored or "://" in stored or stored.startswith("/"):
            return stored or ""
        return storage.join(self.collection_root, stored)

    def upsert(self, table: str, rows: list[dict]) -> None:
        """Insert or replace ``rows`` (by the table's key) in one atomic commit."""
        if not rows:
            return
        if table in URL_COLUMNS:
            rows = [r | {c: self._stored_url(r[c]) for c in URL_COLUMNS[table]} for r in rows]
        data = pa.Table.from_pylist(rows, schema=SCHEMAS[table])
        path = self._path(table)
        try:
            if not self._is_table(table):
                storage.makedirs(path)
                write_deltalake(path, data, mode="append", storage_options=self._options())
                return
            match = " AND ".join(f"t.{k} = s.{k}" for k in KEYS[table])
            (self._table(table).merge(data, predicate=match, source_alias="s", target_alias="t",
                                    merge_schema=True)
             .when_matched_update_all().when_not_matched_insert_all().execute())
        except Exception as exc:
            raise _commit_error(path, exc) from exc

    def delete(self, table: str, keys: list[dict]) -> None:
        """Remove the rows with these keys in one atomic commit."""
        if not keys or not self._is_table(table):
            return
        schema = pa.schema([SCHEMAS[table].field(k) for k in KEYS[table]])
        match = " AND ".join(f"t.{k} = s.{k}" for k in KEYS[table])
        try:
            (self._table(table).merge(pa.Table.from_pylist(keys, schema=schema),
                                                 predicate=match, source_alias="s",
                                                 target_alias="t")
             .when_matched_delete().execute())
        except Exception as exc:
            raise _commit_error(self._path(table), exc) from exc

    def compact(self) -> None:
        """Fold small commit files and drop unreferenced data files (after a grace period)."""
        for table in SCHEMAS:
            if self._is_table(table):
                delta = self._table(table)
                delta.optimize.compact()
                delta.create_checkpoint()
                delta.vacuum(retention_hours=24 * 7, dry_run=False, enforce_retention_duration=False)

    # builds ---------------------------------------------------------------------------------

    def builds(self) -> list[Build]:
        return [Build(**row) for row in self.read("builds").to_pylist()]

    def builds_by_name(self) -> dict[str, Build]:
        return {b.build: b for b in self.builds()}

    def active(self) -> Build | None:
        return next((b for b in self.builds() if b.status == "active"), None)

    def building(self) -> Build | None:
        return next((b for b in self.builds() if b.status == "building"), None)

    def save_build(self, *builds: Build) -> None:
        """Record builds in one commit (a switch activates one and retires the other at once)."""
        stamp = now()
        self.upsert("builds", [asdict(b) | {"updated": stamp} for b in builds])

    # files and shards -----------------------------------------------------------------------

    def files(self, build: str) -> pa.Table:
        return self.read("files", f"build = '{build}'")

    def shards(self, build: str) -> pa.Table:
        return self.read("shards", f"build = '{build}'")

    def record_shards(self, rows: list[ShardRow]) -> None:
        self.upsert("shards", [asdict(r) for r in rows])
