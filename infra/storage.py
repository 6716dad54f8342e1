"""Where run artifacts live: Parquet shards and JSON files under a local path or fsspec URL.

Layout under ``storage_root``::

    models/<artifact>/                          exported ONNX models (local cache)
    collections/<name>/state.json               codec, model and archive parts of the collection
    collections/<name>/manifest.parquet         processed input files (incremental runs)
    collections/<name>/codecs/<codec_id>/       codec.faiss + report.json
    collections/<name>/runs/<run_id>/{passages,embeddings,archive}/part-NNNNN.parquet
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs


def join(base: str, *parts: str) -> str:
    return posixpath.join(base.rstrip("/"), *parts)


def write_parquet(url: str, table: pa.Table) -> None:
    fs, path = url_to_fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")


def read_parquet(url: str, columns: list[str] | None = None) -> pa.Table:
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as fh:
        return pq.read_table(fh, columns=columns)


def parquet_rows(url: str) -> int:
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def write_bytes(url: str, data: bytes) -> None:
    fs, path = url_to_fs(url)
    fs.makedirs(posixpath.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp"
    with fs.open(tmp, "wb") as fh:
        fh.write(data)
    fs.mv(tmp, path)  # readers never see a half-written file


def read_bytes(url: str) -> bytes:
    with fsspec.open(url, "rb") as fh:
        return fh.read()


def write_json(url: str, obj: Any) -> None:
    write_bytes(url, json.dumps(obj, indent=2, sort_keys=True).encode())


def read_json(url: str) -> Any:
    return json.loads(read_bytes(url))


def exists(url: str) -> bool:
    fs, path = url_to_fs(url)
    return fs.exists(path)


def remove(url: str) -> None:
    fs, path = url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


class CollectionPaths:
    """Names every artifact of one collection under the storage root."""

    def __init__(self, storage_root: str, collection: str) -> None:
        self.root = join(storage_root, "collections", collection)

    @property
    def state(self) -> str:
        return join(self.root, "state.json")

    @property
    def manifest(self) -> str:
        return join(self.root, "manifest.parquet")

    def codec_dir(self, codec_id: str) -> str:
        return join(self.root, "codecs", codec_id)

    def run_dir(self, run_id: str) -> str:
        return join(self.root, "runs", run_id)

    def part(self, run_id: str, stage: str, index: int) -> str:
        return join(self.run_dir(run_id), stage, f"part-{index:05d}.parquet")
