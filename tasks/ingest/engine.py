"""The streaming ingest engine: every shard goes chunk → embed → encode → load as soon as the step
before it is done, on the Dask workers, and each step is committed to the catalog as it lands.

The engine keeps only shard ids, URLs and counts. On start it reads the catalog's ledger for the
build and picks every shard up where it was left: a loaded shard is skipped, an encoded one is only
loaded, and so on, so a run that died anywhere redoes only the shards that were in flight.

A build without a codec (a first run) embeds its first shards to FP32 until ``codec.sample_size``
vectors exist, fits the codec on them while chunking goes on, encodes those shards, and streams
the rest straight from embedding to archive: the FP32 intermediate is bounded by the sample.
Milvus servers are written from the workers in parallel; Milvus Lite (one process per file) is
written from this process, one shard at a time, between other shards' completions.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from distributed import Client, Future, as_completed

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.milvus_bulk import wait_for_imports
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.choose import DRIFT_SAMPLE
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.ingest import part_jobs, shard_jobs
from vecpress.tasks.ingest.groups import shard_id
from vecpress.tasks.ingest.results import StreamJob, StreamResult
from vecpress.tasks.inputs.records import InputError

log = logging.getLogger("vecpress")
COMMIT_EVERY_S = 1.0  # ledger commits are batched: at most this long between them
DRIFT_ROWS_PER_SHARD = 64


class StreamEngine:
    """Runs one ``StreamJob`` on a Dask client; commits every shard's progress to ``catalog``."""

    def __init__(self, client: Client, settings: Settings, catalog: Catalog,
                 artifact: ModelArtifact, threads: int, run_id: str,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
        self.client, self.settings, self.catalog = client, settings, catalog
        self.artifact, self.threads, self.run_id = artifact, threads, run_id
        self.paths = CollectionPaths(settings.storage_root, settings.collection)
        self.on_progress = on_progress or (lambda done, total: None)
        self.store = MilvusStore(settings.milvus)
        self.lite = settings.milvus.is_lite
        self.rows: dict[str, ShardRow] = {}
        self.parts_of: dict[str, list[str]] = {}
        self.meta: dict[str, dict] = {}
        self.pending: dict[str, ShardRow] = {}
        self.done_files: list[dict] = []  # files rows of completed groups, not yet committed
        self.gone_files: list[dict] = []  # files of completed groups that produced no rows
        self.last_commit = time.monotonic()
        self.futures: dict[str, tuple[str, str]] = {}  # future key → (step, shard or group id)
        self.hold: deque[str] = deque()  # chunked shards waiting for the codec
        self.lite_loads: deque[ShardRow] = deque()  # encoded shards for this process to load
        self.bulk_ready: list[ShardRow] = []  # encoded shards to bulk-import once committed
        self.bulk_committed: list[ShardRow] = []  # committed as encoded: to import, in batches
        self.fitting = False  # the codec is being fitted on a worker
        # The codec's sample: the first groups in job order (random, reproducible) up to
        # codec.sample_size passages, whichever shards happen to finish first.
        self.sample_groups: set[str] = set()
        self.sample_rows = 0
        self.cursor = 0  # next group (in job order) to consider for the sample
        self.result = StreamResult()
        self.codec: Codec | None = None
        self.codec_dir: str | None = None

    def close(self) -> None:
        self.store.close()

    # --- the run ------------------------------------------------------------------------------

    def run(self, job: StreamJob) -> StreamResult:
        started = time.perf_counter()
        self.job, self.build = job, job.build
        self.groups = {g.group_id: g for g in job.groups}
        if job.build.codec_id:
            self._use_codec(Codec.load(self.paths.codec_dir(job.build.codec_id)), trained=False)
        self._delete_files(job)
        self._wait_for_imports()
        self.queue = as_completed()
        ledger = self.catalog.shards(job.build.build).to_pylist()
        known: dict[str, list[ShardRow]] = {}
        for row in ledger:
            if row["group_id"] in self.groups:
                known.setdefault(row["group_id"], []).append(ShardRow(**row))
        for group in job.groups:
            rows = sorted(known.get(group.group_id, []), key=lambda r: r.part)
            meta_url = storage.join(self.paths.group_dir(group.group_id), "group.json")
            if rows and storage.exists(meta_url):
                self._resume_group(group.group_id, rows, storage.read_json(meta_url))
            else:
                self._submit("chunk", group.group_id, shard_jobs.chunk_group, list(group.files),
                             self.paths.group_dir(group.group_id), inputs=self.settings.inputs,
                             chunking=self.settings.chunk, model=self.artifact,
                             rows_per_shard=self.settings.model.passages_per_shard)
        try:
            self._maybe_fit()
            while not self.queue.is_empty() or self.lite_loads or self.bulk_ready or \
                    self.bulk_committed:
                if (self.bulk_ready or self.bulk_committed) and self.queue.is_empty():
                    self._commit(force=True)
                    self._submit_bulk(force=True)  # the rest, whatever its size
                    continue
                if self.lite_loads and not self.queue.has_ready():
                    # Milvus Lite: this process loads one shard while the workers go on; a
                    # finished shard is committed first, so a kill redoes little.
                    row = self.lite_loads.popleft()
                    self._load_done(row.shard_id, part_jobs.load_part(
                        *self._load_args(row), store=self.store))
                else:
                    future = next(self.queue)
                    step, key = self.futures.pop(future.key)
                    getattr(self, f"_{step}_done")(key, future.result())
                self._maybe_fit()
                self._commit()
        finally:
            self._commit(force=True)
        self.result.wall = time.perf_counter() - started
        self.result.codec = self.codec
        return self.result

    def _submit(self, step: str, key: str, fn: Callable, *args, **kwargs) -> None:
        future: Future = self.client.submit(fn, *args, pure=False, **kwargs)
        self.futures[future.key] = (step, key)
        self.queue.add(future)

    def _set(self, row: ShardRow, **changes) -> ShardRow:
        row = replace(row, run_id=self.run_id, **changes)
        self.rows[row.shard_id] = self.pending[row.shard_id] = row
        return row

    def _submit_bulk(self, force: bool = False) -> None:
        """Committed shards go to bulk import in batches of ``milvus.bulk_min_rows`` rows: each
        import costs the server ~1-3 s of fixed time, so one per small shard would be slower
        than upserts."""
        batch_rows = self.settings.milvus.bulk_min_rows
        while self.bulk_committed and (
                force or sum(r.rows for r in self.bulk_committed) >= batch_rows):
            batch, rows = [], 0
            while self.bulk_committed and (not batch or rows < batch_rows):
                batch.append(self.bulk_committed.pop(0))
                rows += batch[-1].rows
            self._submit("bulk", "|".join(r.shard_id for r in batch), part_jobs.bulk_load_parts,
                         [(r.passages_url, r.archive_url) for r in batch], self.codec.codec_id,
                         self.build.build, self.settings.milvus)

    def _bulk_done(self, key: str, parts: list[part_jobs.LoadedPart]) -> None:
        for shard, done in zip(key.split("|"), parts, strict=True):
            self._load_done(shard, done)

    def _commit(self, force: bool = False) -> None:
        """Commit the shards' new states, then the files of completed groups (in that order: a
        file is recorded only once every shard of its group is committed as loaded)."""
        if not (self.pending or self.done_files or self.gone_files):
            return
        if not force and time.monotonic() - self.last_commit < COMMIT_EVERY_S:
            return
        self.catalog.record_shards(list(self.pending.values()))
        self.catalog.upsert("files", self.done_files)
        self.catalog.delete("files", self.gone_files)
        self.pending, self.done_files, self.gone_files = {}, [], []
        self.last_commit = time.monotonic()
        self.bulk_committed += self.bulk_ready  # a resumed run upserts these: never twice
        self.bulk_ready = []
        self._submit_bulk()
        done = sum(r.state == "loaded" for r in self.rows.values())
        self.on_progress(done, len(self.rows))

    # --- chunk --------------------------------------------------------------------------------

    def _chunk_done(self, group: str, chunked: shard_jobs.ChunkShard) -> None:
        self.result.busy["chunk"] += chunked.seconds
        self._add_group(group, shard_jobs.group_meta(chunked))
        for part, (url, rows) in enumerate(zip(chunked.urls, chunked.rows, strict=True)):
            row = self._set(ShardRow(self.build.build, shard_id(group, part), group, part,
                                     "chunked", url, "", "", rows, self.run_id))
            self._next(row)
        self._group_done_if_loaded(group)

    def _add_group(self, group: str, meta: dict) -> None:
        self.meta[group] = meta
        self.parts_of[group] = [shard_id(group, i) for i in range(len(meta["urls"]))]
        self.result.documents += meta["documents"]
        self.result.passages += sum(meta["rows"])
        self.result.shards += len(meta["urls"])
        self.result.errors += [InputError(**e) for e in meta["errors"]]
        self.result.first_passages = self.result.first_passages or next(iter(meta["urls"]), None)

    def _resume_group(self, group: str, rows: list[ShardRow], meta: dict) -> None:
        self._add_group(group, meta)
        for row in rows:
            self.rows[row.shard_id] = row
            if row.state == "loaded":
                self.result.shards_skipped += 1
                refused = part_jobs.refused_url(row.archive_url)
                if storage.exists(refused):  # still reported by the run that finishes the job
                    self.result.errors += [InputError(**e) for e in storage.read_json(refused)]
                continue
            self.result.shards_resumed += row.state != "chunked"
            if row.state == "embedded" and not storage.exists(row.embeddings_url):
                row = self._set(row, state="chunked", embeddings_url="")
            if row.state == "embedded":
                self.result.fp32_urls.append(row.embeddings_url)
            self._next(row)
        self._group_done_if_loaded(group)

    # --- embed, encode, load ------------------------------------------------------------------

    def _next(self, row: ShardRow) -> None:
        """Send a shard on to its next step."""
        if row.state == "chunked":
            self._embed(row)
        elif row.state == "embedded" and self.codec is not None:
            archive = self._archive_url(row)
            self._submit("encode", row.shard_id, part_jobs.encode_part, row.embeddings_url,
                         archive, self.codec_dir)
        elif row.state == "encoded":
            self._load(row)

    def _archive_url(self, row: ShardRow) -> str:
        return storage.join(self.paths.group_dir(row.group_id),
                            f"archive-{self.codec.codec_id}-{row.part:04d}.parquet")

    def _embed(self, row: ShardRow) -> None:
        if self.codec is None and row.group_id not in self.sample_groups and not self.fitting:
            # Not part of the codec's sample: wait for the codec. While it is being fitted the
            # workers go on embedding (to FP32, bounded by the fit's time) instead of idling.
            self.hold.append(row.shard_id)
            return
        if self.codec is None:
            out = storage.join(self.paths.group_dir(row.group_id),
                               f"embeddings-{row.part:04d}.parquet")
        else:
            out = self._archive_url(row)
        collecting = sum(len(s) for s in self.result.drift_sample) < DRIFT_SAMPLE
        self._submit("embed", row.shard_id, part_jobs.embed_part, row.passages_url, out,
                     artifact=self.artifact, model=self.settings.model, threads=self.threads,
                     codec_dir=self.codec_dir,
                     reuse=tuple(self.job.old_parts.get(row.group_id, ())),
                     sample_rows=DRIFT_ROWS_PER_SHARD if collecting and self.codec else 0,
                     seed=self.settings.codec.seed + row.part)

    def _embed_done(self, shard: str, done: part_jobs.EmbeddedPart) -> None:
        r = self.result
        r.busy["embed"] += done.seconds
        r.embedded, r.reused, r.truncated = (r.embedded + done.embedded, r.reused + done.reused,
                                             r.truncated + done.truncated)
        if len(done.sample):
            r.drift_sample.append(done.sample)
        if done.encoded:
            self._load(self._set(self.rows[shard], state="encoded", archive_url=done.url),
                       fresh=True)
        else:
            self._set(self.rows[shard], state="embedded", embeddings_url=done.url)
            r.fp32_urls.append(done.url)
            self._next(self.rows[shard])

    def _encode_done(self, shard: str, seconds: float) -> None:
        self.result.busy["encode"] += seconds
        self._load(self._set(self.rows[shard], state="encoded",
                             archive_url=self._archive_url(self.rows[shard])), fresh=True)

    def _load_args(self, row: ShardRow) -> tuple:
        return (row.passages_url, row.archive_url, self.codec.codec_id, self.build.build,
                self.settings.milvus)

    def _load(self, row: ShardRow, fresh: bool = False) -> None:
        """Upsert the shard, or bulk-import it: only on a server, into a new build, once the run
        has ``milvus.bulk_min_rows`` passages, when this run encoded it, and only after its
        ``encoded`` state is committed (``_commit`` submits it). A shard a killed run may have
        imported is found ``encoded`` and upserted, which replaces its rows: exactly once."""
        milvus = self.settings.milvus
        if self.lite:  # one writer per Milvus Lite file: this process, between completions
            self.lite_loads.append(row)
        elif fresh and milvus.bulk_dir and self.build.status == "building" and \
                self.result.passages >= milvus.bulk_min_rows:
            self.bulk_ready.append(row)
        else:
            self._submit("load", row.shard_id, part_jobs.load_part, *self._load_args(row))

    def _load_done(self, shard: str, done: part_jobs.LoadedPart) -> None:
        self.result.rows_written += done.written
        self.result.rows_bulk_imported += done.written if done.bulk else 0
        if done.note:
            self.result.notes.append(done.note)
        self.result.busy["load"] += done.seconds
        self.result.errors += [InputError(**e) for e in done.refused]
        row = self._set(self.rows[shard], state="loaded")
        self._group_done_if_loaded(row.group_id)

    # --- codec, deletes, files ----------------------------------------------------------------

    def _use_codec(self, codec: Codec, trained: bool) -> None:
        self.codec, self.codec_dir = codec, self.paths.codec_dir(codec.codec_id)
        self.result.codec_trained = trained
        self.store.ensure_collection(self.build.build, codec.dim, codec.codec_id)

    def _grow_sample(self) -> None:
        """Take groups into the codec's sample in job order as they are chunked, until it holds
        ``codec.sample_size`` passages: the same sample whatever order the workers finish in."""
        order = self.job.groups
        while self.codec is None and self.cursor < len(order) and \
                self.sample_rows < self.settings.codec.sample_size:
            group = order[self.cursor].group_id
            if group not in self.meta:
                return  # not chunked yet
            self.sample_groups.add(group)
            self.sample_rows += sum(self.meta[group]["rows"])
            self.cursor += 1
            waiting = [s for s in self.hold if self.rows[s].group_id == group]
            for shard in waiting:
                self.hold.remove(shard)
                self._embed(self.rows[shard])

    def _maybe_fit(self) -> None:
        """Fit the codec (on a worker: this loop keeps committing) once the sample is complete
        and every shard of it is embedded."""
        self._grow_sample()
        if self.codec is not None or self.fitting:
            return
        complete = self.cursor == len(self.job.groups) or \
            self.sample_rows >= self.settings.codec.sample_size
        parts = [self.rows[s] for g in self.sample_groups for s in self.parts_of[g]]
        if not complete or not parts or any(r.state != "embedded" for r in parts):
            return
        parts.sort(key=lambda r: r.shard_id)
        self.fitting = True
        self._submit("fit", "codec", part_jobs.fit_codec_job, [r.embeddings_url for r in parts],
                     [r.rows for r in parts], self.settings.codec, self.settings.milvus,
                     storage.join(self.paths.root, "codecs"), priority=10)  # before the held
        while self.hold:
            self._embed(self.rows[self.hold.popleft()])

    def _fit_done(self, _: str, fitted: part_jobs.FittedCodec) -> None:
        codec = Codec.load(self.paths.codec_dir(fitted.codec_id))
        self.build = replace(self.build, codec_id=codec.codec_id)
        self.catalog.save_build(self.build)
        self._use_codec(codec, trained=True)
        self.result.codec_lines, self.result.codec_seconds = fitted.lines, fitted.seconds
        log.info("codec %s fitted on %d vectors in %.1f s", codec.codec_id, fitted.vectors,
                 fitted.seconds)
        for row in self.rows.values():
            if row.state == "embedded":
                self._next(row)
        while self.hold:
            self._embed(self.rows[self.hold.popleft()])

    def _wait_for_imports(self) -> None:
        """Before anything is loaded into a new build: no import of a killed run may still be
        running (it would land after this run's upserts of the same shards)."""
        if not self.lite and self.settings.milvus.bulk_dir and self.build.status == "building" \
                and self.store.client.has_collection(self.build.build):
            wait_for_imports(self.settings.milvus, self.build.build)

    def _delete_files(self, job: StreamJob) -> None:
        """Rows of deleted files go first: a new file may reuse a deleted file's keys."""
        if not job.deleted:
            return
        stale = part_jobs.stale_pks([p for p, _, _ in job.deleted], [],
                                    sorted({s for _, _, srcs in job.deleted for s in srcs}))
        self.result.rows_deleted += self.store.delete(self.build.build, stale.tolist())
        self.catalog.delete("files", [{"build": self.build.build, "path": p}
                                      for p in job.deleted_paths])

    def _group_done_if_loaded(self, group: str) -> None:
        """All of a group's shards are loaded: delete what its changed files no longer hold,
        then record its files (the commit that makes the group part of the collection)."""
        if group not in self.meta or \
                any(self.rows[s].state != "loaded" for s in self.parts_of[group]):
            return
        old = self.job.old_parts.get(group, [])
        if old:
            stale = part_jobs.stale_pks([p for p, _, _ in old], self.meta[group]["urls"],
                                        sorted({s for _, _, srcs in old for s in srcs}))
            self.result.rows_deleted += self.store.delete(self.build.build, stale.tolist())
        counts = self.meta[group]["passages_by_source"]
        files = self.groups[group].files
        self.done_files += [
            {"build": self.build.build, "path": f.url, "size": f.size, "modified": f.modified,
             "content_hash": self.job.hashes[f.url], "group_id": group,
             "passages": counts[f.url], "run_id": self.run_id}
            for f in files if counts.get(f.url)]
        self.gone_files += [{"build": self.build.build, "path": f.url}
                            for f in files if not counts.get(f.url)]
