"""Loading encoded shards into Milvus: from where, and when.

Three paths, chosen per shard, kept out of the engine's loop because each has its own ordering
rule. A Milvus server is written from the workers in parallel, one upsert per shard. A new build,
once the run has ``milvus.bulk_min_rows`` passages, is bulk-imported instead, in batches of that
many rows (each import costs the server ~1-3 s of fixed time, so one per small shard would be
slower than upserts), and only after the shards' ``encoded`` state is committed. Milvus Lite is
one process per file, so this process writes it, one shard at a time, between other shards'
completions.

Loading also prepares what comes after it while the workers still embed. Every ``FLUSH_ROWS``
rows loaded, the collection is flushed: Lite otherwise persists its whole memtable when the store
closes (30.3 µs a row in this process with Lite's own flush, 4.7 with
``lite_arrow.flush_in_columns``: results/upsert_columns.json), after the last shard, while every
worker waits; and a server seals its segments. Lite also flushes once near the run's end
(``loaded``'s ``rows_left``), while the last shards embed: at 30k MiniLM passages that flush took
1.55 s after the last shard. Both segments it makes hold at least ``LITE_SEGMENT_ROWS``: Lite
trains its 128 IVF lists per segment, and FAISS prints a warning on fewer than 39 rows a list.

A new build on a server gets its vector index before its first row (``index_early``), so that
the server indexes each sealed segment during the load: built after the load, the index took
70 of 165 s at 300k passages on 2 cores (results/scale_nano_server_300000.json).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from vecpress.infra.index_plan import LITE_IVF_NLIST, IndexPlan
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.milvus_bulk import wait_for_imports
from vecpress.infra.settings import MilvusSettings
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.catalog import Build, ShardRow
from vecpress.tasks.collection.loading import plan_for
from vecpress.tasks.ingest import part_jobs

FLUSH_ROWS = 65_536
LITE_SEGMENT_ROWS = 39 * LITE_IVF_NLIST  # FAISS's floor for training Lite's IVF lists


class Loads:
    """The encoded shards waiting to be loaded into ``build``. Loads on the workers go through
    the engine's ``submit`` as steps ``load`` and ``bulk``, whose results the engine records;
    ``codec_id`` is set by the engine once the codec is known."""

    def __init__(self, milvus: MilvusSettings, store: MilvusStore, build: Build,
                 submit: Callable[..., None], per_shard: int) -> None:
        self.milvus, self.store, self.submit, self.per_shard = milvus, store, submit, per_shard
        self.collection, self.new_build = build.build, build.status == "building"
        self.codec_id = ""
        self.width = 0  # the PCA components Milvus holds (Codec.milvus_dim), with the codec
        self.typed: dict[str, str] = {}  # the build's typed metadata fields, with the codec
        self.lite_rows: deque[ShardRow] = deque()  # encoded shards for this process to load
        self.unflushed = 0  # rows loaded since the collection's last flush
        self.ended = False  # the flush near a Lite run's end is done
        self.bulk_ready: list[ShardRow] = []  # encoded shards to bulk-import once committed
        self.bulk_committed: list[ShardRow] = []  # committed as encoded: to import, in batches

    def wait_for_imports(self) -> None:
        """Before anything is loaded into a new build: no import of a killed run may still be
        running (it would land after this run's upserts of the same shards)."""
        if not self.milvus.is_lite and self.milvus.bulk_dir and self.new_build \
                and self.store.client.has_collection(self.collection):
            wait_for_imports(self.milvus, self.collection)

    def waiting(self) -> bool:
        """Whether any shard waits for this process to load or to submit it."""
        return bool(self.lite_rows or self.bulk_waiting())

    def bulk_waiting(self) -> bool:
        return bool(self.bulk_ready or self.bulk_committed)

    def load(self, row: ShardRow, fresh: bool, passages: int) -> None:
        """Upsert the shard, or bulk-import it: only on a server, into a new build, once the run
        has ``milvus.bulk_min_rows`` passages (``passages`` so far), when this run encoded it
        (``fresh``), and only after its ``encoded`` state is committed (``committed`` submits
        it). A shard a killed run may have imported is found ``encoded`` and upserted, which
        replaces its rows: exactly once."""
        if self.milvus.is_lite:  # one writer per Milvus Lite file: this process, between steps
            self.lite_rows.append(row)
        elif fresh and self.milvus.bulk_dir and self.new_build and \
                passages >= self.milvus.bulk_min_rows:
            self.bulk_ready.append(row)
        else:
            self.submit("load", row.shard_id, part_jobs.load_part, *self._args(row))

    def load_here(self) -> tuple[str, part_jobs.LoadedPart]:
        """Load the next Milvus Lite shard from this process: its id and what the load did."""
        row = self.lite_rows.popleft()
        return row.shard_id, part_jobs.load_part(*self._args(row), store=self.store)

    def loaded(self, part: part_jobs.LoadedPart, rows_left: int | None = None) -> None:
        """A shard is in the collection: flush it every ``FLUSH_ROWS`` upserted rows (bulk-imported
        rows arrive in sealed segments, with nothing to flush), and on Lite once near the end
        (``_ending``). ``rows_left``: the run's rows still to load, once every group is chunked."""
        if part.bulk:
            return
        self.unflushed += part.written
        if self.unflushed >= FLUSH_ROWS or self._ending(rows_left):
            self.store.flush(self.collection)
            self.unflushed = 0

    def _ending(self, rows_left: int | None) -> bool:
        """Lite, once: what it holds is persisted while the last shards embed, not after them,
        when both it and the rows left make segments of ``LITE_SEGMENT_ROWS`` or more. The rows
        left fall by at most a shard at a time, so they pass through the window."""
        if not self.milvus.is_lite or self.ended or rows_left is None \
                or not LITE_SEGMENT_ROWS <= rows_left <= LITE_SEGMENT_ROWS + self.per_shard:
            return False
        self.ended = True
        return self.unflushed >= LITE_SEGMENT_ROWS

    def index_early(self, codec: Codec, rows: int) -> IndexPlan | None:
        """Index a new build on a server before its first row, planned for ``rows`` (the run's
        estimate; the index stage rebuilds it only if the collection outgrew it): the plan to
        record with the build, or None (Lite, an incremental run, an index already there)."""
        if self.milvus.is_lite or not self.new_build or self.store.has_index(self.collection):
            return None
        plan = plan_for(self.milvus, codec, rows)
        self.store.create_index(self.collection, plan)
        return plan

    def committed(self) -> None:
        """The shards' states are committed: the encoded ones may now be bulk-imported (a
        resumed run upserts these: never twice)."""
        self.bulk_committed += self.bulk_ready
        self.bulk_ready = []
        self.submit_bulk()

    def submit_bulk(self, force: bool = False) -> None:
        """Committed shards go to bulk import in batches of ``milvus.bulk_min_rows`` rows; with
        ``force``, the rest too, whatever its size."""
        batch_rows = self.milvus.bulk_min_rows
        while self.bulk_committed and (
                force or sum(r.rows for r in self.bulk_committed) >= batch_rows):
            batch: list[ShardRow] = []
            rows = 0
            while self.bulk_committed and (not batch or rows < batch_rows):
                batch.append(self.bulk_committed.pop(0))
                rows += batch[-1].rows
            self.submit("bulk", "|".join(r.shard_id for r in batch), part_jobs.bulk_load_parts,
                        [(r.passages_url, r.archive_url) for r in batch], self.codec_id,
                        self.width, self.collection, self.milvus, self.typed)

    def _args(self, row: ShardRow
              ) -> tuple[str, str, str, int, str, MilvusSettings, dict[str, str]]:
        return (row.passages_url, row.archive_url, self.codec_id, self.width, self.collection,
                self.milvus, self.typed)
