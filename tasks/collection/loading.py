"""Load a run's shards into Milvus: passage fields from the passages shard, vector from the archive."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpress.infra import storage
from vecpress.infra.index_plan import IndexPlan, plan_index, replan
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import MilvusSettings
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.codec.refine import read_archive_vectors
from vecpress.tasks.collection.typed_columns import typed_columns
from vecpress.tasks.inputs.records import METADATA
from vecpress.tasks.similarity import milvus_metric


class ShardMismatchError(RuntimeError):
    """A passages shard and its archive shard disagree on rows: the run's files are damaged."""


PASSAGE_FIELDS = ["pk", "doc_id", "chunk", "text", "source"]


def _metadata(passages: pa.Table) -> pa.Array:
    """The passages' metadata as JSON text, ``{}`` where there is none (Milvus's JSON field takes
    no null; shards written before metadata was kept have no such column)."""
    if METADATA not in passages.column_names:
        return pa.array(["{}"] * passages.num_rows, pa.string())
    return pc.fill_null(passages.column(METADATA), "{}").combine_chunks()


def _vectors(passages_url: str, archive_url: str, pks: np.ndarray, width: int) -> np.ndarray:
    """What Milvus holds of the archive shard's decoded PCA vectors (their leading ``width``
    components: ``Codec.milvus_dim``), checked to be those of the passages' ``pks``."""
    archived, vectors = read_archive_vectors(archive_url, width)
    if not np.array_equal(pks, archived):
        raise ShardMismatchError(f"{passages_url} and {archive_url} hold different passages; "
                                 "re-run the ingest")
    return vectors


def shard_table(passages_url: str, archive_url: str, codec_id: str, width: int,
                typed: dict[str, str] | None = None, sources: set[str] | None = None) -> pa.Table:
    """The Milvus rows of one shard pair (``width``: the components Milvus holds) as one Arrow
    table in the collection's field order: what an upsert takes and the file a bulk import
    reads (the vector as a list of floats; ``typed``: the collection's typed metadata fields,
    before it). With ``sources``, only the rows of those input files."""
    passages = storage.read_parquet(passages_url, columns=PASSAGE_FIELDS, optional=(METADATA,))
    vectors = _vectors(passages_url, archive_url, passages.column("pk").to_numpy(), width)
    if sources is not None:
        keep = pc.is_in(passages.column("source"), pa.array(sorted(sources), pa.string()))
        passages, vectors = passages.filter(keep), vectors[keep.to_numpy(zero_copy_only=False)]
    offsets = pa.array(np.arange(0, vectors.size + 1, vectors.shape[1], dtype=np.int32))
    metadata = _metadata(passages)
    return pa.table({
        "pk": passages.column("pk"), "doc_id": passages.column("doc_id"),
        "chunk": passages.column("chunk").cast(pa.int32()), "text": passages.column("text"),
        "source": passages.column("source"),
        "codec_id": pa.array([codec_id] * passages.num_rows, pa.string()),
        METADATA: metadata, **typed_columns(metadata.to_pylist() if typed else [], typed or {},
                                            passages_url),
        "vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})


@dataclass(frozen=True)
class LoadResult:
    """What loading did to the Milvus collection."""

    rows_written: int
    rows_deleted: int
    rows_in_milvus: int
    index: dict
    plan: IndexPlan | None = None  # how it is indexed and searched (recorded with the build)


def plan_for(settings: MilvusSettings, codec: Codec, rows: int) -> IndexPlan:
    """The index plan of ``codec``'s vectors at ``rows`` rows (an applied auto-tune's choice as
    its floor)."""
    tuned = codec.report.get("autotune") or {}
    return plan_index(settings, max(rows, 1), codec.report["pq_m"], codec.report["pq_nbits"],
                      codec.nlist, {**tuned["chosen"], "base_vectors": tuned.get("base_vectors")}
                      if tuned.get("applied") and tuned.get("chosen") else None,
                      milvus_metric(codec.similarity))


def index_collection(store: MilvusStore, collection: str, codec: Codec,
                     built: IndexPlan | None) -> tuple[IndexPlan, dict, int]:
    """Index the collection for the rows it holds now: (plan, Milvus's index description, rows).

    ``built`` is the plan its current index was built with (the build's record): the index is
    rebuilt when the collection outgrew it, and the search parameters follow the rows.
    """
    store.flush(collection)
    fresh = plan_for(store.settings, codec, store.stored_rows(collection))
    plan, rebuild = replan(built, fresh, store.has_index(collection))
    described = store.ensure_index(collection, plan, rebuild)
    return plan, described, store.count(collection)


def load_collection(store: MilvusStore, collection: str, codec: Codec, pairs: list[tuple[str, str]],
                    stale: list[int] | None = None,
                    live: dict[tuple[str, str], set[str]] | None = None,
                    metadata: MetadataSettings | None = None) -> LoadResult:
    """Create (or check) the collection (``metadata``: its typed fields), delete ``stale`` rows,
    upsert ``pairs``, index, count.

    Stale rows go first: a new file may reuse a deleted file's keys. A server loads only indexed
    collections, so the index is built before counting.
    """
    store.ensure_collection(collection, codec.milvus_dim, codec.codec_id, metadata)
    deleted = store.delete(collection, stale or [])
    written = load_shards(store, collection, pairs, codec, live)
    plan, index, rows = index_collection(store, collection, codec, None)
    return LoadResult(written, deleted, rows, index, plan)


def load_shards(store: MilvusStore, collection: str, pairs: list[tuple[str, str]],
                codec: Codec, live: dict[tuple[str, str], set[str]] | None = None) -> int:
    """Upsert every (passages, archive) shard pair; return the rows written.

    ``live`` limits each pair to the input files whose current rows it holds (a shard also keeps
    rows of files deleted or rewritten by later runs).
    """
    typed = store.typed_fields(collection)
    return sum(store.upsert_table(collection, shard_table(p, a, codec.codec_id, codec.milvus_dim,
                                                          typed, live.get((p, a)) if live else None))
               for p, a in pairs)
