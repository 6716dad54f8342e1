"""Units of work on one shard after chunking, run on the Dask workers: embed (and encode), encode,
load into Milvus, and the primary keys a changed file no longer produces.

Each writes its output to the storage root and returns a small record (counts, URLs, seconds), so
the flow process never holds passages; the caller commits the shard's new state to the catalog.
"""

from __future__ import annotations

import hashlib
import posixpath
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore, RefusedRow
from vecpress.infra.milvus_bulk import BulkImporter, BulkImportError
from vecpress.infra.settings import CodecSettings, MilvusSettings, ModelSettings
from vecpress.tasks.arrays import numpy_to_fixed_list, read_embeddings
from vecpress.tasks.codec.choose import curve_due, fit_new_codec, recall_curve
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.codec.refine import write_archive
from vecpress.tasks.collection.incremental import ReuseIndex, read_old_passages, text_hashes
from vecpress.tasks.collection.loading import shard_table
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.per_process import worker_embedder
from vecpress.tasks.embed.published import local_copy
from vecpress.tasks.ingest.shard_jobs import embed_table
from vecpress.tasks.inputs.records import InputError
from vecpress.tasks.inputs.token_sidecar import remove_sidecar, with_sidecar_ids
from vecpress.tasks.report.plot import save_plot
from vecpress.tasks.worker_cache import per_worker

OldPart = tuple[str, str, tuple[str, ...]]  # (passages URL, archive URL, sources still wanted)


@dataclass
class EmbeddedPart:
    """What embedding one shard did: rows, how many went through the model, a small sample."""

    url: str
    rows: int
    embedded: int
    reused: int
    truncated: int
    seconds: float
    encoded: bool  # True: ``url`` is the archive shard; False: FP32 embeddings (no codec yet)
    sample: np.ndarray = field(default_factory=lambda: np.empty((0, 0), np.float32))


def _codec(codec_dir: str) -> Codec:
    return per_worker("codec", lambda: Codec.load(codec_dir), codec_dir)


def _reuse_index(old: tuple[OldPart, ...]) -> ReuseIndex:
    """Archived vectors of the changed files' old passages, once per worker and change set."""
    return per_worker("reuse", lambda: read_old_passages(list(old)).reuse, list(old))


def embed_part(passages_url: str, out_url: str, artifact: ModelArtifact, model: ModelSettings,
               threads: int, codec_dir: str | None, reuse: tuple[OldPart, ...] = (),
               sample_rows: int = 0, seed: int = 0) -> EmbeddedPart:
    """Embed one passages shard; with a codec, project it and write the archive shard directly.

    Passages whose text already has an archived vector (``reuse``: the old shards of changed
    files) take it instead of being embedded. Without a codec (a first run before the codec is
    fitted) the FP32 embeddings are written instead, for the codec's sample. ``sample_rows``
    FP32 vectors come back for the caller's drift check.
    """
    started = time.perf_counter()
    artifact = local_copy(artifact)  # a worker sharing no disk with the flow: its own copy
    table = with_sidecar_ids(storage.read_parquet(passages_url), passages_url)
    hit = np.zeros(table.num_rows, bool)
    rows = np.zeros(0, np.int64)
    index = _reuse_index(reuse) if reuse and codec_dir else None
    if index is not None and len(index):
        hit, rows = index.find(text_hashes(table))
    todo = table.filter(pa.array(~hit)) if hit.any() else table
    embedder = worker_embedder(artifact, model, threads)
    truncated = embedder.truncated
    vectors = np.empty((0, artifact.dim), np.float32)
    if todo.num_rows:
        vectors = embed_table(todo, embedder, passages_url)
    sample = np.empty((0, artifact.dim), np.float32)
    if sample_rows and len(vectors):
        pick = np.random.default_rng(seed).choice(len(vectors), min(sample_rows, len(vectors)),
                                                  replace=False)
        sample = vectors[np.sort(pick)]
    if codec_dir is None:
        storage.write_parquet(out_url, pa.table({
            "pk": todo.column("pk"), "embedding": numpy_to_fixed_list(vectors, pa.float32())}))
    else:
        codec = _codec(codec_dir)
        pca = np.empty((table.num_rows, codec.dim), np.float32)
        if index is not None and hit.any():
            pca[hit] = index.vectors[rows]  # decoded: coded again, they keep their codes
        if len(vectors):
            pca[~hit] = codec.project(vectors)
        write_archive(out_url, table.column("pk").to_numpy(), pca, codec.refiner)
    remove_sidecar(passages_url)
    return EmbeddedPart(out_url, table.num_rows, todo.num_rows, int(hit.sum()),
                        embedder.truncated - truncated, time.perf_counter() - started,
                        codec_dir is not None, sample)


def encode_part(embeddings_url: str, archive_url: str, codec_dir: str) -> float:
    """PCA-project one FP32 embeddings shard into its archive shard; return the seconds taken."""
    started = time.perf_counter()
    pks, vectors = read_embeddings(embeddings_url)
    codec = _codec(codec_dir)
    write_archive(archive_url, pks, codec.project(vectors), codec.refiner)
    return time.perf_counter() - started


def _store(settings: MilvusSettings) -> MilvusStore:
    return per_worker("milvus", lambda: MilvusStore(settings), settings)


@dataclass
class LoadedPart:
    """What loading one shard did; ``refused``: ``InputError`` dicts of rows Milvus refused."""

    written: int
    seconds: float
    refused: list[dict] = field(default_factory=list)
    bulk: bool = False  # imported by Milvus bulk import, not upserted
    note: str = ""  # why a bulk import fell back to upserts


def refused_url(archive_url: str) -> str:
    """Where a loaded shard keeps the rows Milvus refused, so a resumed run still reports them."""
    return posixpath.splitext(archive_url)[0] + ".refused.json"


def load_part(passages_url: str, archive_url: str, codec_id: str, width: int, collection: str,
              milvus: MilvusSettings, typed: dict[str, str] | None = None,
              store: MilvusStore | None = None) -> LoadedPart:
    """Upsert one shard pair into the physical collection (``width``: the PCA components it
    holds; ``typed``: its typed metadata fields).

    A row Milvus refuses is quarantined (reported with Milvus's reason) while the rest of the
    shard loads. On a Milvus server each worker keeps its own connection; Milvus Lite (one
    process per file) passes the flow's ``store``.
    """
    started = time.perf_counter()
    store = store or _store(milvus)
    refused: list[RefusedRow] = []
    table = shard_table(passages_url, archive_url, codec_id, width, typed)
    written = store.upsert_table(collection, table, refused)
    errors = [InputError(r.row["source"], f"record {r.row['doc_id']} passage {r.row['chunk']}",
                         f"Milvus refused the passage: {r.reason}",
                         "it was not loaded; fix the record and ingest again").to_dict()
              for r in refused]
    if errors:
        storage.write_json(refused_url(archive_url), errors)
    return LoadedPart(written, time.perf_counter() - started, errors)


def bulk_load_parts(pairs: list[tuple[str, str]], codec_id: str, width: int, collection: str,
                    milvus: MilvusSettings, typed: dict[str, str] | None = None
                    ) -> list[LoadedPart]:
    """Bulk-import several shard pairs as one file (a first load only: ``infra.milvus_bulk``);
    if the server fails to import it (nothing of it is visible), each shard is upserted instead,
    which also quarantines the rows Milvus refuses. An import still running at
    ``milvus.bulk_timeout_s`` fails the run."""
    started = time.perf_counter()
    importer = per_worker("milvus-bulk", lambda: BulkImporter(milvus), milvus)
    tables = [shard_table(passages, archive, codec_id, width, typed)
              for passages, archive in pairs]
    name = hashlib.sha256("|".join(a for _, a in pairs).encode()).hexdigest()[:24]
    try:
        importer.import_table(collection, pa.concat_tables(tables), name)
    except BulkImportError as exc:
        parts = [load_part(passages, archive, codec_id, width, collection, milvus, typed)
                 for passages, archive in pairs]
        parts[0].note = f"{exc}; its {len(pairs)} shard(s) were upserted instead"
        return parts
    seconds = (time.perf_counter() - started) / len(pairs)
    return [LoadedPart(t.num_rows, seconds, bulk=True) for t in tables]


def pks_of(parts: list[str], sources: list[str]) -> np.ndarray:
    """Primary keys the passage shards ``parts`` hold for the input files ``sources`` (sorted)."""
    wanted = pa.array(sorted(sources))
    found = []
    for url in parts:
        table = storage.read_parquet(url, columns=["pk", "source"])
        found.append(table.filter(pc.is_in(table.column("source"), wanted)).column("pk")
                     .to_numpy())
    return np.unique(np.concatenate(found)) if found else np.empty(0, np.int64)


def stale_pks(old_parts: list[str], new_parts: list[str], sources: list[str]) -> np.ndarray:
    """Rows the old shards hold for ``sources`` that the new shards no longer write."""
    return np.setdiff1d(pks_of(old_parts, sources), pks_of(new_parts, sources),
                        assume_unique=True)


def sample_embeddings(urls: list[str], rows: list[int], size: int, seed: int) -> np.ndarray:
    """A uniform random sample of ``min(size, sum(rows))`` embeddings from shards of ``rows``
    rows each, read one shard at a time. Each shard gives its share, rounded so that the shares
    add up exactly: a sample one short of ``codec.min_fit_vectors`` would keep whole vectors."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(rows, np.int64)
    takes = counts.copy()
    if counts.sum() > size:
        quotas = counts * (size / counts.sum())
        takes = np.floor(quotas).astype(np.int64)
        takes[np.argsort(takes - quotas, kind="stable")[:size - int(takes.sum())]] += 1
    parts = []
    for url, take in zip(urls, takes.tolist(), strict=True):
        if take:
            _, vectors = read_embeddings(url)
            parts.append(vectors[rng.choice(len(vectors), size=min(take, len(vectors)),
                                            replace=False)])
    return np.concatenate(parts) if parts else np.empty((0, 0), np.float32)


@dataclass
class FittedCodec:
    codec_id: str
    lines: list[str]
    seconds: float
    vectors: int
    curve_due: bool = False  # the recall-vs-bytes curve is still to measure (``curve_job``)


def fit_codec_job(urls: list[str], rows: list[int], settings: CodecSettings,
                  milvus: MilvusSettings, codecs_root: str, similarity: str,
                  run_dir: str) -> FittedCodec:
    """Fit a new collection's codec on a sample of its first FP32 shards, for the model's
    ``similarity``; save it by its id (and an auto-tune's plot in ``run_dir``)."""
    started = time.perf_counter()
    sample = sample_embeddings(urls, rows, settings.sample_size, settings.seed)
    codec, lines = fit_new_codec(sample, settings, milvus, similarity)
    codec.save(storage.join(codecs_root, codec.codec_id))
    if "autotune" in codec.report:
        save_plot(codec.report["autotune"], run_dir)
    return FittedCodec(codec.codec_id, lines, time.perf_counter() - started, len(sample),
                       curve_due(codec, len(sample), settings))


@dataclass
class CodecCurve:
    table: dict
    lines: list[str]
    seconds: float


def curve_job(urls: list[str], rows: list[int], settings: CodecSettings,
              milvus: MilvusSettings, codec_dir: str, similarity: str,
              run_dir: str) -> CodecCurve:
    """The recall-vs-bytes curve around a codec just fitted on the same sample (the same seed
    draws the same vectors), run beside the encoding and loading; its table joins the codec's
    report (one atomic write: encoders read only the index), its plot the run's folder."""
    started = time.perf_counter()
    sample = sample_embeddings(urls, rows, settings.sample_size, settings.seed)
    table, lines = recall_curve(sample, settings, milvus, similarity)
    report = storage.read_json(storage.join(codec_dir, "report.json")) | {"autotune": table}
    storage.write_json(storage.join(codec_dir, "report.json"), report)
    save_plot(table, run_dir)
    return CodecCurve(table, lines, time.perf_counter() - started)
