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

The engine is the loop and the steps' order; it hands three concerns to small objects it calls:
the shard ledger and its commits (``ledger.Ledger``), the codec's sample and the shards held for
it (``codec_sample.CodecSample``), and the choice between Lite loads, upserts and bulk import
(``loads.Loads``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import replace

from distributed import Client, Future, as_completed

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.choose import DRIFT_SAMPLE
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.codec.refine import ARCHIVE_SUFFIX
from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.ingest import part_jobs, shard_jobs
from vecpress.tasks.ingest.codec_sample import CodecSample
from vecpress.tasks.ingest.groups import shard_id
from vecpress.tasks.ingest.ledger import Ledger, RunProgress
from vecpress.tasks.ingest.loads import Loads
from vecpress.tasks.ingest.part_jobs import OldPart
from vecpress.tasks.ingest.results import StreamJob, StreamResult
from vecpress.tasks.inputs.records import InputError

log = logging.getLogger("vecpress")
DRIFT_ROWS_PER_SHARD = 64
# Dask runs a higher priority first (ties in submission order). Later steps go first, so a shard
# in flight is finished before more input is read: intermediates stay small, loading starts early,
# and the codec's sample is embedded as soon as it is chunked rather than after every chunk task
# of the run (300k passages, nano model: loads began 52 s into a 77 s stream before). Among
# embeds a larger shard goes first (``_embed``) and the codec's curve before them, so that the
# run does not end with one worker embedding a full shard or measuring the curve while the others
# have nothing left.
PRIORITY = {"chunk": 0, "embed": 1, "encode": 2, "load": 3, "bulk": 3, "fit": 10, "curve": 2}


class StreamEngine:
    """Runs one ``StreamJob`` on a Dask client; commits every shard's progress to ``catalog``."""

    def __init__(self, client: Client, settings: Settings, catalog: Catalog,
                 artifact: ModelArtifact, threads: int, run_id: str,
                 on_progress: Callable[[RunProgress], None] | None = None) -> None:
        self.client, self.settings, self.catalog = client, settings, catalog
        self.artifact, self.threads, self.run_id = artifact, threads, run_id
        self.paths = CollectionPaths(settings.storage_root, settings.collection)
        self.on_progress = on_progress or (lambda progress: None)
        self.store = MilvusStore(settings.milvus)
        self.ledger = Ledger(catalog, run_id)
        # Shards beyond the sample fill the worker slots its last shards leave idle.
        self.sample = CodecSample(settings.codec.sample_size, self.ledger,
                                  slots=sum(client.nthreads().values()))
        # future key → (step, shard or group id)
        self.futures: dict[Hashable, tuple[str, str]] = {}
        self.result = StreamResult()
        self.codec: Codec | None = None
        self.codec_dir: str | None = None
        self.indexed_early = False
        self.fit_inputs: tuple[list[str], list[int]] = ([], [])  # the codec sample's shards
        self.unloaded = 0  # rows of the shards known and not loaded yet

    def close(self) -> None:
        self.store.close()

    # --- the run ------------------------------------------------------------------------------

    def run(self, job: StreamJob) -> StreamResult:
        started = time.perf_counter()
        self.job, self.build = job, job.build
        self.groups = {g.group_id: g for g in job.groups}
        self.loads = Loads(self.settings.milvus, self.store, job.build, self._submit,
                           self.settings.model.passages_per_shard)
        self.typed = self.store.resolve_typed(self.settings.metadata, job.build.build, job.serving)
        if job.build.codec_id:
            self._use_codec(Codec.load(self.paths.codec_dir(job.build.codec_id)), trained=False)
        self._delete_files(job)
        self.loads.wait_for_imports()
        self.queue = as_completed()
        known = self.ledger.read(job.build.build, self.groups)
        for group in job.groups:
            rows = known.get(group.group_id, [])
            meta_url = storage.join(self.paths.group_dir(group.group_id), "group.json")
            if rows and storage.exists(meta_url):
                self._resume_group(group.group_id, rows, storage.read_json(meta_url))
            else:
                self._submit("chunk", group.group_id, shard_jobs.chunk_group, list(group.files),
                             self.paths.group_dir(group.group_id), inputs=self.settings.inputs,
                             chunking=self.settings.chunk, model=self.artifact,
                             rows_per_shard=self.settings.model.passages_per_shard,
                             typed=self.typed)
        try:
            self._maybe_fit()
            while not self.queue.is_empty() or self.loads.waiting():
                if self.loads.bulk_waiting() and self.queue.is_empty():
                    self._commit(force=True)
                    self.loads.submit_bulk(force=True)  # the rest, whatever its size
                    continue
                if self.loads.lite_rows and not self.queue.has_ready():
                    # Milvus Lite: this process loads one shard while the workers go on; a
                    # finished shard is committed first, so a kill redoes little.
                    self._load_done(*self.loads.load_here())
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
        future: Future = self.client.submit(fn, *args, pure=False,
                                            **{"priority": PRIORITY[step]} | kwargs)
        self.futures[future.key] = (step, key)
        self.queue.add(future)

    def _commit(self, force: bool = False) -> None:
        """Commit the ledger (``Ledger.commit``); then the shards it committed as encoded may be
        bulk-imported."""
        if not self.ledger.commit(force):
            return
        self.loads.committed()
        self.on_progress(self.ledger.progress(self.job.groups))

    # --- chunk --------------------------------------------------------------------------------

    def _chunk_done(self, group: str, chunked: shard_jobs.ChunkShard) -> None:
        self.result.busy["chunk"] += chunked.seconds
        self.unloaded += sum(chunked.rows)
        meta = shard_jobs.group_meta(chunked)
        self.ledger.add_group(group, meta)
        self.result.add_group(meta)
        self._index_early()
        for part, (url, rows) in enumerate(zip(chunked.urls, chunked.rows, strict=True)):
            row = self.ledger.set(ShardRow(self.build.build, shard_id(group, part), group, part,
                                           "chunked", url, "", "", rows, self.run_id))
            self._next(row)
        self._group_done_if_loaded(group)

    def _resume_group(self, group: str, rows: list[ShardRow], meta: dict) -> None:
        self.ledger.add_group(group, meta)
        self.result.add_group(meta)
        for row in rows:
            self.ledger.rows[row.shard_id] = row
            if row.state == "loaded":
                self.result.shards_skipped += 1
                refused = part_jobs.refused_url(row.archive_url)
                if storage.exists(refused):  # still reported by the run that finishes the job
                    self.result.errors += [InputError(**e) for e in storage.read_json(refused)]
                continue
            self.unloaded += row.rows
            self.result.shards_resumed += row.state != "chunked"
            if row.state == "embedded" and not storage.exists(row.embeddings_url):
                row = self.ledger.set(row, state="chunked", embeddings_url="")
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
        if self.codec is None:
            raise RuntimeError(f"shard {row.shard_id}: an archive needs the codec, not fitted yet")
        return storage.join(self.paths.group_dir(row.group_id),
                            f"archive-{self.codec.codec_id}-{row.part:04d}{ARCHIVE_SUFFIX}")

    def _embed(self, row: ShardRow) -> None:
        if self.codec is None and self.sample.hold(row):
            return  # not part of the codec's sample: it waits for the fit to start
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
                     seed=self.settings.codec.seed + row.part,
                     priority=PRIORITY["embed"] + _share(row.rows, self.settings.model
                                                         .passages_per_shard)
                     - (row.shard_id in self.sample.taken_ahead))  # after the sample's

    def _embed_done(self, shard: str, done: part_jobs.EmbeddedPart) -> None:
        self.result.add_embedded(done)
        row = self.ledger.rows[shard]
        if done.encoded:
            self._load(self.ledger.set(row, state="encoded", archive_url=done.url), fresh=True)
        else:
            self._next(self.ledger.set(row, state="embedded", embeddings_url=done.url))

    def _encode_done(self, shard: str, seconds: float) -> None:
        self.result.busy["encode"] += seconds
        row = self.ledger.rows[shard]
        self._load(self.ledger.set(row, state="encoded", archive_url=self._archive_url(row)),
                   fresh=True)

    def _load(self, row: ShardRow, fresh: bool = False) -> None:
        """Hand the encoded shard to ``Loads.load``: ``fresh`` when this run encoded it."""
        self.loads.load(row, fresh, self.result.passages)

    def _load_done(self, shard: str, done: part_jobs.LoadedPart) -> None:
        self.result.add_loaded(done)
        self.unloaded -= self.ledger.rows[shard].rows
        every_group_chunked = len(self.ledger.meta) == len(self.groups)
        self.loads.loaded(done, self.unloaded if every_group_chunked else None)
        row = self.ledger.set(self.ledger.rows[shard], state="loaded")
        self._group_done_if_loaded(row.group_id)

    def _bulk_done(self, key: str, parts: list[part_jobs.LoadedPart]) -> None:
        for shard, done in zip(key.split("|"), parts, strict=True):
            self._load_done(shard, done)

    # --- codec, deletes, files ----------------------------------------------------------------

    def _use_codec(self, codec: Codec, trained: bool) -> None:
        self.codec, self.codec_dir = codec, self.paths.codec_dir(codec.codec_id)
        self.loads.codec_id, self.loads.width = codec.codec_id, codec.milvus_dim
        self.result.codec_trained = trained
        self.store.ensure_collection(self.build.build, codec.milvus_dim, codec.codec_id,
                                     self.typed)
        self.loads.typed = self.store.typed_fields(self.build.build)
        self._index_early()

    def _index_early(self) -> None:
        """Once the codec is known and the run's size can be estimated: a new build's index on a
        server (``Loads.index_early``), recorded with the build, which the index stage keeps
        unless the collection outgrew it."""
        if self.indexed_early or self.codec is None:
            return
        rows = self.ledger.expected_rows(self.job.groups)
        if not rows:
            return
        self.indexed_early = True
        plan = self.loads.index_early(self.codec, rows)
        if plan is not None:
            self.build = replace(self.build, index=plan.to_json())
            self.catalog.save_build(self.build)

    def _maybe_fit(self) -> None:
        """Grow the codec's sample as groups are chunked; fit the codec (on a worker: this loop
        keeps committing) once the sample is complete and every shard of it is embedded."""
        if self.codec is not None:
            return
        self._embed_all(self.sample.grow(self.job.groups))
        parts = self.sample.ready()
        if not parts:
            self._embed_all(self.sample.fill())
            return
        held = self.sample.start_fit()
        self.fit_inputs = ([r.embeddings_url for r in parts], [r.rows for r in parts])
        self._submit("fit", "codec", part_jobs.fit_codec_job, *self.fit_inputs,
                     self.settings.codec, self.settings.milvus,
                     storage.join(self.paths.root, "codecs"), self.artifact.similarity,
                     self.paths.run_dir(self.run_id))  # before the held
        self._embed_all(held)

    def _embed_all(self, shards: list[str]) -> None:
        for shard in shards:
            self._embed(self.ledger.rows[shard])

    def _fit_done(self, _: str, fitted: part_jobs.FittedCodec) -> None:
        codec = Codec.load(self.paths.codec_dir(fitted.codec_id))
        self.build = replace(self.build, codec_id=codec.codec_id)
        self.catalog.save_build(self.build)
        self._use_codec(codec, trained=True)
        self.result.codec_lines, self.result.codec_seconds = fitted.lines, fitted.seconds
        log.info("codec %s fitted on %d vectors in %.1f s", codec.codec_id, fitted.vectors,
                 fitted.seconds)
        if fitted.curve_due:  # the report's curve, measured while the shards encode and load
            self._submit("curve", "codec", part_jobs.curve_job, *self.fit_inputs,
                         self.settings.codec, self.settings.milvus, self.codec_dir,
                         codec.similarity, self.paths.run_dir(self.run_id))
        for row in self.ledger.rows.values():
            if row.state == "embedded":
                self._next(row)
        self._embed_all(self.sample.release())

    def _curve_done(self, _: str, curve: part_jobs.CodecCurve) -> None:
        if self.codec is not None:
            self.codec.report["autotune"] = curve.table
        self.result.codec_lines, self.result.curve_seconds = curve.lines, curve.seconds

    def _delete_files(self, job: StreamJob) -> None:
        """Rows of deleted files go first: a new file may reuse a deleted file's keys."""
        if not job.deleted:
            return
        self._delete_stale(job.deleted, [])
        self.catalog.delete("files", [{"build": self.build.build, "path": p}
                                      for p in job.deleted_paths])

    def _group_done_if_loaded(self, group: str) -> None:
        """All of a group's shards are loaded: delete what its changed files no longer hold,
        then record its files (the commit that makes the group part of the collection)."""
        if not self.ledger.loaded(group):
            return
        old = self.job.old_parts.get(group, [])
        if old:
            self._delete_stale(old, self.ledger.meta[group]["urls"])
        self.ledger.record_files(self.build.build, self.groups[group], self.job.hashes)

    def _delete_stale(self, old: list[OldPart], new_parts: list[str]) -> None:
        """Delete the rows of ``old`` shards (of files changed or deleted) that ``new_parts``,
        the files' new passages, no longer hold."""
        stale = part_jobs.stale_pks([p for p, _, _ in old], new_parts,
                                    sorted({s for _, _, srcs in old for s in srcs}))
        self.result.rows_deleted += self.store.delete(self.build.build, stale.tolist())


def _share(rows: int, per_shard: int) -> float:
    """A shard's size as a share of a full one, below 1: it orders embeds among themselves only
    (a shard chunked with a larger ``passages_per_shard`` by an earlier run counts as full)."""
    return min(rows, per_shard) / (per_shard + 1)
