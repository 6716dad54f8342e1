"""Units of work that run on Dask workers, one shard at a time, reading and writing Parquet.

Shards stay on storage between stages, so the flow process only ever holds counts and URLs, and a
worker holds one shard. Row order is preserved across a shard's passages, embeddings and archive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from vecpress.infra import storage
from vecpress.infra.bounds import MAX_VARCHAR_BYTES
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.settings import ChunkSettings, InputSettings, ModelSettings
from vecpress.tasks.arrays import numpy_to_fixed_list
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.model_files import load_tokenizer
from vecpress.tasks.embed.per_process import worker_embedder
from vecpress.tasks.embed.published import local_copy
from vecpress.tasks.embed.tokenising import Tokens
from vecpress.tasks.ingest.passage_columns import PassageColumns
from vecpress.tasks.inputs.chunking import Chunker
from vecpress.tasks.inputs.records import (
    TOKEN_IDS,
    TOKENIZER_KEY,
    InputError,
    Record,
    SourceFile,
    passage_schema,
)
from vecpress.tasks.inputs.sources import read_records
from vecpress.tasks.inputs.token_sidecar import remove_sidecar, with_sidecar_ids, write_sidecar
from vecpress.tasks.inputs.typed_values import check_record
from vecpress.tasks.worker_cache import per_worker

log = logging.getLogger(__name__)

MAX_ERRORS_PER_FILE = 20
NO_TYPED_FIELDS = MetadataSettings()
# Records chunked together (one encode_batch for all their paragraphs): enough for the
# tokenizer's threads, few enough characters to bound what a batch holds.
CHUNK_BATCH_RECORDS = 512
CHUNK_BATCH_CHARS = 4_000_000


@dataclass
class ChunkShard:
    """What one chunking task produced: passage shard files (bounded in rows) and input errors."""

    urls: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)  # passages in each shard file
    documents: int = 0
    passages: int = 0
    errors: list[InputError] = field(default_factory=list)
    passages_by_source: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class EmbedShard:
    url: str
    rows: int
    seconds: float
    truncated: int


def _chunker(model_dir: str, settings: ChunkSettings) -> Chunker:
    """One chunker per worker process and configuration."""
    return per_worker("chunker", lambda: Chunker(load_tokenizer(Path(model_dir)), settings),
                      model_dir, settings)


def chunk_files(files: list[SourceFile], out_prefix: str, inputs: InputSettings,
                chunking: ChunkSettings, model_dir: str, rows_per_shard: int,
                typed: MetadataSettings = NO_TYPED_FIELDS) -> ChunkShard:
    """Read and chunk a group of files into passage shards of at most ``rows_per_shard`` rows.

    Bad input becomes ``InputError`` entries (a record whose metadata does not fit ``typed``
    too); the other records and files are still chunked.
    """
    started = time.perf_counter()
    chunker = _chunker(model_dir, chunking)
    result = ChunkShard()
    schema = passage_schema(chunker.tokenizer_fingerprint if chunking.keep_token_ids else None)
    shard = PassageColumns(schema)

    def flush() -> None:
        if len(shard):
            url = f"{out_prefix}-{len(result.urls):04d}.parquet"
            table = shard.table()
            if not chunking.keep_token_ids:  # the embed task's, deleted once it has them
                write_sidecar(url, shard.ids_table(table.column("pk"),
                                                   chunker.tokenizer_fingerprint))
            storage.write_parquet(url, table)
            result.urls.append(url)
            result.rows.append(len(shard))
            result.passages += len(shard)
            shard.clear()

    pending: list[Record] = []
    pending_chars = 0

    def chunk_pending() -> None:
        """Chunk the records read so far in one batch, then add them document by document
        (shards are cut after the document that fills one, as when chunked one by one)."""
        nonlocal pending_chars
        by_source = result.passages_by_source
        for item, passages in zip(pending, chunker.passages_many([r.text for r in pending]),
                                  strict=True):
            result.documents += 1
            if passages:
                by_source[item.source] = by_source.get(item.source, 0) + len(passages)
                shard.add(item, passages)
            if len(shard) >= rows_per_shard:
                flush()
        pending.clear()
        pending_chars = 0

    for src in files:
        file_errors = 0
        for item in read_records(src, inputs):
            if isinstance(item, Record):
                item = _too_long_id(item) or check_record(item, typed) or item
            if isinstance(item, InputError):
                file_errors += 1
                if file_errors <= MAX_ERRORS_PER_FILE:
                    result.errors.append(item)
                continue
            pending.append(item)
            pending_chars += len(item.text)
            if len(pending) >= CHUNK_BATCH_RECORDS or pending_chars >= CHUNK_BATCH_CHARS:
                chunk_pending()
        if file_errors > MAX_ERRORS_PER_FILE:  # how many, not only that there were more
            result.errors.append(InputError(
                src.url, "", f"{file_errors - MAX_ERRORS_PER_FILE:,} more bad records in this "
                f"file were skipped, not listed ({file_errors:,} in all)",
                "fix the ones above first"))
    chunk_pending()
    flush()
    result.seconds = time.perf_counter() - started
    return result


def _too_long_id(record: Record) -> InputError | None:
    """A document id or source URL longer than a Milvus VARCHAR holds (text is split instead)."""
    if (len(record.doc_id) + len(record.source)) * 4 <= MAX_VARCHAR_BYTES:
        return None  # the usual record, without encoding either (a character is <= 4 bytes)
    for name, value in (("document id", record.doc_id), ("source URL", record.source)):
        size = len(value.encode())
        if size > MAX_VARCHAR_BYTES:
            return InputError(record.source, f"record {record.doc_id[:40]}…",
                              f"{name} is {size:,} bytes, more than Milvus stores "
                              f"({MAX_VARCHAR_BYTES:,})", f"shorten the {name}")
    return None


def embed_shard(passages_url: str, out_url: str, artifact: ModelArtifact, model: ModelSettings,
                threads: int, on_progress: Callable[[int], None] | None = None) -> EmbedShard:
    """Embed one passages shard with the worker's ONNX session; write pk + embedding.

    Passage ids (``doc_id#chunk``) name the passages of a batch that cannot fit in memory;
    ``on_progress(n)`` reports passages embedded as batches finish. The chunker's token ids are
    used when the shard has them from this model's tokenizer; otherwise the text is tokenised.
    """
    embedder = worker_embedder(artifact, model, threads)
    table = with_sidecar_ids(storage.read_parquet(passages_url), passages_url)
    truncated_before = embedder.truncated
    started = time.perf_counter()
    vectors = embed_table(table, embedder, passages_url, on_progress)
    seconds = time.perf_counter() - started
    storage.write_parquet(out_url, pa.table({
        "pk": table.column("pk"),
        "embedding": numpy_to_fixed_list(vectors, pa.float32()),
    }))
    remove_sidecar(passages_url)
    return EmbedShard(out_url, len(vectors), seconds, embedder.truncated - truncated_before)


def embed_table(table: pa.Table, embedder: OnnxEmbedder, url: str,
                on_progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Embed a passages table: from the chunker's token ids when they came from this model's
    tokenizer, else from the text. Passage ids (``doc_id#chunk``) name a batch that fails."""
    ids = [f"{d}#{c}" for d, c in zip(table.column("doc_id").to_pylist(),
                                      table.column("chunk").to_pylist(), strict=True)]
    # The chunker's ids are of the text alone: a model with a document prompt embeds from text.
    tokens = None if embedder.artifact.document_prompt else _chunker_tokens(table, embedder, url)
    if tokens is not None:
        return embedder.encode_tokens(tokens, ids=ids, on_progress=on_progress)
    return embedder.encode_documents(table.column("text").to_pylist(), ids=ids,
                                     on_progress=on_progress)


def _chunker_tokens(table: pa.Table, embedder: OnnxEmbedder, url: str) -> Tokens | None:
    """The shard's token ids as the embedder's inputs, if they came from the embedder's tokenizer."""
    if TOKEN_IDS not in table.column_names:
        return None
    made_by = (table.schema.metadata or {}).get(TOKENIZER_KEY, b"").decode()
    if made_by != embedder.tokenizer_fingerprint:
        log.info("%s: token ids are from another tokenizer (%s, model's %s); tokenising the text",
                 url, made_by or "unknown", embedder.tokenizer_fingerprint)
        return None
    try:
        specials = embedder.special_tokens
    except ValueError as exc:
        log.info("%s: %s", url, exc)
        return None
    return specials.wrap(table.column(TOKEN_IDS), embedder.artifact.max_seq_length)


def chunk_group(files: list[SourceFile], folder: str, inputs: InputSettings,
                chunking: ChunkSettings, model: ModelArtifact, rows_per_shard: int,
                typed: MetadataSettings = NO_TYPED_FIELDS) -> ChunkShard:
    """Chunk one shard group into ``folder``: its part files, then ``group.json`` (what a resumed
    run needs to report the group and record its files without reading it again). The tokenizer
    is the model's: this host's copy when it was published to the storage root."""
    result = chunk_files(files, storage.join(folder, "part"), inputs, chunking,
                         local_copy(model).model_dir, rows_per_shard, typed)
    storage.write_json(storage.join(folder, "group.json"), group_meta(result))
    return result


def group_meta(result: ChunkShard) -> dict:
    return {"documents": result.documents, "passages_by_source": result.passages_by_source,
            "errors": [e.to_dict() for e in result.errors], "urls": result.urls,
            "rows": result.rows}
