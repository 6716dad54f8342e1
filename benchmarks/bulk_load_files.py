"""The bulk-load benchmark's rows and files: passage-like rows in the project's schema, and the
files bulk import reads, written by pymilvus's LocalBulkWriter or by pyarrow straight from the
column arrays (bulk_load.py measures both against upserts).

pymilvus 3.0.2's ``pymilvus.bulk_writer`` refuses to import without the ``bulk_writer`` extras
(minio, azure-storage-blob), which LocalBulkWriter does not use: ``import_bulk_writer`` lets it
load without them.
"""

from __future__ import annotations

import importlib.machinery
import logging
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pymilvus.orm.schema import CollectionSchema

from vecpress.infra.milvus import collection_schema as milvus_schema

DIM = 128
MAX_TEXT = 65_535  # vecpress.infra.bounds.MAX_VARCHAR_BYTES
CHUNK_BYTES = 128 << 20  # LocalBulkWriter's default chunk: one import file per 128 MiB
_VOCABULARY = """the of and to in is that for it as with was on be by this are from or an which at
vector index search query passage document model embedding cluster server storage quantisation
compression recall latency memory batch segment collection shard codec milvus dimension distance
nearest neighbour training sample encoder token sentence language retrieval ranking score result
field schema primary key import upsert"""
WORDS = tuple(_VOCABULARY.split())


def quiet_pymilvus() -> None:
    """ORM calls warn that they go in PyMilvus 3.1; the bulk writer logs every file at INFO."""
    warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")
    logging.getLogger("pymilvus.bulk_writer").setLevel(logging.WARNING)


def import_bulk_writer() -> tuple[Any, Any, Callable[..., Any], str]:
    """``LocalBulkWriter``, ``BulkFileType``, ``bulk_import`` and a note on how they were loaded.

    ``pymilvus.bulk_writer/__init__`` refuses to load unless minio and azure are installed (the
    ``pymilvus[bulk_writer]`` extras), although only RemoteBulkWriter and the Zilliz volume
    helpers use them. Missing ones are replaced, in this process only, by placeholder modules
    whose classes raise when called.
    """
    try:
        from pymilvus.bulk_writer import BulkFileType, LocalBulkWriter, bulk_import
        return LocalBulkWriter, BulkFileType, bulk_import, "pymilvus.bulk_writer imported as is"
    except ModuleNotFoundError as exc:
        reason = str(exc)
    from importlib.util import find_spec

    missing = [root for root in ("minio", "azure") if find_spec(root) is None]
    for name in ("minio", "minio.error", "minio.helpers", "azure", "azure.core",
                 "azure.core.exceptions", "azure.storage", "azure.storage.blob"):
        if name.split(".")[0] in missing:
            sys.modules[name] = _placeholder_module(name)
    from pymilvus.bulk_writer import BulkFileType, LocalBulkWriter, bulk_import
    note = (f"pymilvus.bulk_writer refused to import ({reason}); placeholder modules for "
            f"{', '.join(missing)} let LocalBulkWriter load (RemoteBulkWriter unusable)")
    return LocalBulkWriter, BulkFileType, bulk_import, note


def _placeholder_module(name: str) -> types.ModuleType:
    """A module whose every public attribute is a class that raises when called."""

    def refuse(*_: Any, **__: Any) -> None:
        raise ModuleNotFoundError(f"{name}: placeholder of a missing pymilvus[bulk_writer] extra")

    def attribute(attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (Exception,), {"__init__": refuse})

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []  # type: ignore[attr-defined]
    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


def collection_schema() -> CollectionSchema:
    """The schema of ``MilvusStore.ensure_collection`` (infra/milvus.py)."""
    return milvus_schema(DIM, "vecpress bulk-load benchmark")


def make_columns(n: int, seed: int = 0) -> dict[str, Any]:
    """n passages: ~300-byte texts of common words, 4 chunks per document, random vectors."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    picks = words[rng.integers(0, len(words), size=(n, 60))]
    texts = []
    for row in picks:
        text = " ".join(row.tolist())
        texts.append(text[:text.rfind(" ", 0, 300)].capitalize() + ".")
    return {
        "pk": np.arange(n, dtype=np.int64),
        "doc_id": [f"doc-{i // 4:08d}" for i in range(n)],
        "chunk": (np.arange(n) % 4).astype(np.int32),
        "text": texts,
        "source": [f"corpus/part-{i % 64:03d}.jsonl" for i in range(n)],
        "codec_id": ["pca128-ivfpq16"] * n,
        "vector": rng.standard_normal((n, DIM), dtype=np.float32),
    }


def make_rows(cols: dict[str, Any]) -> list[dict[str, Any]]:
    """Row dicts as ``MilvusStore.upsert_table`` hands a shard to a server
    (``milvus_fields.table_rows``: the vector a float32 row)."""
    pks, chunks, vectors = cols["pk"].tolist(), cols["chunk"].tolist(), cols["vector"]
    return [{"pk": pks[i], "doc_id": cols["doc_id"][i], "chunk": chunks[i], "text": cols["text"][i],
             "source": cols["source"][i], "codec_id": cols["codec_id"][i], "vector": vectors[i]}
            for i in range(len(pks))]


def write_with_bulk_writer(writer_cls: Any, file_type: Any, rows: list[dict[str, Any]], folder: Path
                           ) -> list[list[str]]:
    """LocalBulkWriter files (a new file per 128 MiB buffered); the file sets to import."""
    folder.parent.mkdir(parents=True, exist_ok=True)  # the writer makes only the last level
    writer = writer_cls(schema=collection_schema(), local_path=str(folder), file_type=file_type,
                        chunk_size=CHUNK_BYTES)
    for row in rows:
        writer.append_row(row)
    writer.commit()
    return [list(files) for files in writer.batch_files]


def write_with_pyarrow(cols: dict[str, Any], folder: Path) -> list[list[str]]:
    """Parquet as LocalBulkWriter writes it (vector: list<float>), straight from the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(cols["pk"])
    row_bytes = 8 + 4 + 4 * DIM + sum(len(cols[k][0]) for k in ("doc_id", "text", "source", "codec_id"))
    per_file = max(1, CHUNK_BYTES // row_bytes)
    files = []
    for k, start in enumerate(range(0, n, per_file)):
        end = min(n, start + per_file)
        vectors = np.ascontiguousarray(cols["vector"][start:end]).reshape(-1)
        offsets = np.arange(0, (end - start + 1) * DIM, DIM, dtype=np.int32)
        table = pa.table({
            "pk": cols["pk"][start:end], "doc_id": cols["doc_id"][start:end],
            "chunk": cols["chunk"][start:end], "text": cols["text"][start:end],
            "source": cols["source"][start:end], "codec_id": cols["codec_id"][start:end],
            "vector": pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors)),
        })
        path = folder / f"{k + 1}.parquet"
        pq.write_table(table, path)
        files.append([str(path)])
    return files
