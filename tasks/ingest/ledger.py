"""The engine's copy of one build's shard ledger: every shard's latest row, each chunked group's
metadata, and the changes not yet committed to the catalog.

Kept apart from the engine because it is the part a kill must find consistent: commits are
batched (each is a Delta Lake commit), and inside one commit the shards' states go first, then the
files of completed groups, so a file is recorded only once every shard of its group is committed
as loaded.

Commits are spaced by at least ``COMMIT_EVERY_S`` and by ``1 / COMMIT_SHARE`` times the last one's
duration, so they take at most ~2% of the run's wall time however slow the catalog's store is
(a 300k-passage run made 83 commits a second apart: 5.7 s of merges, 4% of its 138 s).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, replace

from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.ingest.groups import Group, shard_id

COMMIT_EVERY_S = 1.0  # ledger commits are batched: at least this long between them
COMMIT_SHARE = 0.02  # ... and at least the last commit's duration / this


@dataclass(frozen=True)
class RunProgress:
    """How far a streaming run is, in the passages the model has embedded (the bulk of the work
    on any machine): shards are loaded only once the codec is fitted, so a first run's shards
    loaded stayed at 0 for most of it (30k passages: 0/17 for 72 of 114 s). ``passages`` is
    estimated from the input bytes until every group is chunked (``estimated``)."""

    embedded: int  # passages of the shards past embedding (or done by an earlier run)
    passages: int  # the run's passages; 0 before any group is chunked
    estimated: bool
    loaded: int  # shards loaded
    shards: int  # shards known so far

    def line(self) -> str:
        total = f"{'~' if self.estimated else ''}{self.passages:,}" if self.passages else "?"
        return (f"{self.embedded:,}/{total} passages embedded, {self.loaded}/{self.shards} "
                "shards loaded")


class Ledger:
    """Shard rows and files rows of one run, committed to ``catalog`` in batches."""

    def __init__(self, catalog: Catalog, run_id: str) -> None:
        self.catalog, self.run_id = catalog, run_id
        self.rows: dict[str, ShardRow] = {}
        self.parts_of: dict[str, list[str]] = {}
        self.meta: dict[str, dict] = {}
        self.pending: dict[str, ShardRow] = {}
        self.done_files: list[dict] = []  # files rows of completed groups, not yet committed
        self.gone_files: list[dict] = []  # files of completed groups that produced no rows
        self.last_commit = time.monotonic()
        self.spacing = COMMIT_EVERY_S

    def read(self, build: str, groups: Collection[str]) -> dict[str, list[ShardRow]]:
        """The rows earlier runs of ``build`` committed for ``groups``, by group, in part order."""
        known: dict[str, list[ShardRow]] = {}
        for row in self.catalog.shards(build).to_pylist():
            if row["group_id"] in groups:
                known.setdefault(row["group_id"], []).append(ShardRow(**row))
        return {group: sorted(rows, key=lambda r: r.part) for group, rows in known.items()}

    def add_group(self, group: str, meta: dict) -> None:
        """A chunked group: its metadata (``shard_jobs.group_meta``) and its shards' ids."""
        self.meta[group] = meta
        self.parts_of[group] = [shard_id(group, i) for i in range(len(meta["urls"]))]

    def set(self, row: ShardRow, **changes) -> ShardRow:
        """``row`` with ``changes``, stamped with this run: the shard's latest row, to commit."""
        row = replace(row, run_id=self.run_id, **changes)
        self.rows[row.shard_id] = self.pending[row.shard_id] = row
        return row

    def loaded(self, group: str) -> bool:
        """Whether ``group`` is chunked and every shard of it is loaded."""
        return group in self.meta and \
            all(self.rows[s].state == "loaded" for s in self.parts_of[group])

    def record_files(self, build: str, group: Group, hashes: dict[str, str]) -> None:
        """The files rows of a loaded group, for the next commit: its files that produced
        passages are recorded, the ones that produced none are removed."""
        counts = self.meta[group.group_id]["passages_by_source"]
        self.done_files += [
            {"build": build, "path": f.url, "size": f.size, "modified": f.modified,
             "content_hash": hashes[f.url], "group_id": group.group_id,
             "passages": counts[f.url], "run_id": self.run_id}
            for f in group.files if counts.get(f.url)]
        self.gone_files += [{"build": build, "path": f.url}
                            for f in group.files if not counts.get(f.url)]

    def commit(self, force: bool = False) -> bool:
        """Commit the shards' new states, then the files of completed groups; False when there
        was nothing to commit or (unless ``force``) the last commit is too recent."""
        if not (self.pending or self.done_files or self.gone_files):
            return False
        started = time.monotonic()
        if not force and started - self.last_commit < self.spacing:
            return False
        self.catalog.record_shards(list(self.pending.values()))
        self.catalog.upsert("files", self.done_files)
        self.catalog.delete("files", self.gone_files)
        self.pending, self.done_files, self.gone_files = {}, [], []
        self.last_commit = time.monotonic()
        self.spacing = max(COMMIT_EVERY_S, (self.last_commit - started) / COMMIT_SHARE)
        return True

    def expected_rows(self, groups: list[Group]) -> int:
        """The run's passages, estimated from the groups chunked so far (passages per input
        byte × every group's bytes); 0 before any group is chunked."""
        chunked = [g for g in groups if g.group_id in self.meta]
        size = sum(f.size for g in chunked for f in g.files)
        if not size:
            return 0
        rows = sum(sum(self.meta[g.group_id]["rows"]) for g in chunked)
        return round(rows / size * sum(f.size for g in groups for f in g.files))

    def progress(self, groups: list[Group]) -> RunProgress:
        """The run's progress over its ``groups``."""
        embedded = sum(r.rows for r in self.rows.values() if r.state != "chunked")
        estimated = any(g.group_id not in self.meta for g in groups)
        passages = self.expected_rows(groups)  # exact once every group is chunked
        return RunProgress(embedded, max(passages, embedded), estimated,
                           sum(r.state == "loaded" for r in self.rows.values()), len(self.rows))
