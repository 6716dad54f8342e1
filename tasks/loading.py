"""Load a run's shards into Milvus: passage fields from the passages shard, vector from the archive."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.tasks.codec import fixed_list_to_numpy


class ShardMismatchError(RuntimeError):
    """A passages shard and its archive shard disagree on rows: the run's files are damaged."""


def shard_rows(passages_url: str, archive_url: str, codec_id: str,
               sources: set[str] | None = None) -> Iterator[dict]:
    """Milvus rows of one shard pair; with ``sources``, only the rows of those input files."""
    passages = storage.read_parquet(passages_url, columns=["pk", "doc_id", "chunk", "text", "source"])
    archive = storage.read_parquet(archive_url, columns=["pk", "pca_fp16"])
    pks = passages.column("pk").to_numpy()
    if not np.array_equal(pks, archive.column("pk").to_numpy()):
        raise ShardMismatchError(f"{passages_url} and {archive_url} hold different passages; "
                                 "re-run the ingest")
    vectors = fixed_list_to_numpy(archive.column("pca_fp16"), np.float32)
    fields = {name: passages.column(name).to_pylist() for name in ("doc_id", "chunk", "text",
                                                                   "source")}
    for i, pk in enumerate(pks.tolist()):
        if sources is not None and fields["source"][i] not in sources:
            continue
        yield {"pk": pk, "doc_id": fields["doc_id"][i], "chunk": fields["chunk"][i],
               "text": fields["text"][i], "source": fields["source"][i], "codec_id": codec_id,
               "vector": vectors[i]}


def load_shards(store: MilvusStore, collection: str, pairs: list[tuple[str, str]],
                codec_id: str, live: dict[tuple[str, str], set[str]] | None = None) -> int:
    """Upsert every (passages, archive) shard pair; return the rows written.

    ``live`` limits each pair to the input files whose current rows it holds (a shard also keeps
    rows of files deleted or rewritten by later runs).
    """
    return sum(store.upsert(collection, list(shard_rows(p, a, codec_id,
                                                        live.get((p, a)) if live else None)))
               for p, a in pairs)
