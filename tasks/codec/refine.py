"""The rescoring tier's codes: what the archive keeps of each passage's PCA vector, and how.

Search rescores each ANN candidate with a finer copy of its PCA vector than the Milvus index
holds. That copy is kept once per passage, in the archive shards (which loading, reindex,
incremental reuse and the search host's rescoring store read), so its width sets most of a
collection's bytes: FP16 costs 2 B per dimension; a FAISS scalar quantizer trained
with the codec costs 1 B (``sq8``), 0.75 B (``sq6``) or 0.5 B (``sq4``) for a small loss of
rescoring precision (``benchmarks/refine_codes.py``).

Each archive shard says how it is coded: its schema carries the trained quantizer (serialised
FAISS, ~3 KB), so every reader decodes a shard without looking for its codec. A shard without one
holds FP16 vectors in column ``pca_fp16``: the format of exact codecs and of every archive written
before this tier existed, which stay readable as they are.

A shard is an uncompressed Arrow IPC file (``.arrow``), one record batch: its codes are one
contiguous buffer at a fixed offset, so the search host's rescoring store reads rows of a local
archive in place (``codes_region``) instead of keeping a second copy of every code. Archives
written before are Parquet (``.parquet``) and are read as they are.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa

from vecpress.infra import storage
from vecpress.tasks.arrays import fixed_list_to_numpy, numpy_to_fixed_list

FP16_COLUMN = "pca_fp16"
CODES_COLUMN = "pca_codes"
METADATA_KEY = b"vecpress.refine"  # the serialised quantizer, in an archive shard's schema
KIND_KEY = b"vecpress.refine_kind"
ARCHIVE_SUFFIX = ".arrow"
KINDS = {"sq8": faiss.ScalarQuantizer.QT_8bit, "sq6": faiss.ScalarQuantizer.QT_6bit,
         "sq4": faiss.ScalarQuantizer.QT_4bit}


class ArchiveFormatError(ValueError):
    """An archive shard's codes cannot be read with the quantizer it is merged with."""


@dataclass(frozen=True)
class Refiner:
    """How the archive codes PCA vectors: FP16 (no ``index``) or a trained scalar quantizer."""

    kind: str = "fp16"
    index: faiss.IndexScalarQuantizer | None = None

    @property
    def column(self) -> str:
        return FP16_COLUMN if self.index is None else CODES_COLUMN

    @property
    def dtype(self) -> type:
        """The type of one stored value: FP16 components, or bytes of codes."""
        return np.float16 if self.index is None else np.uint8

    def bytes_per_vector(self, dim: int) -> int:
        return 2 * dim if self.index is None else int(self.index.sa_code_size())

    def encode(self, pca: np.ndarray) -> np.ndarray:
        """FP16 [n, dim], or uint8 codes [n, bytes]."""
        if self.index is None:
            return np.asarray(pca, dtype=np.float16)
        return self.index.sa_encode(np.ascontiguousarray(pca, dtype=np.float32))

    def decode(self, stored: np.ndarray, width: int | None = None) -> np.ndarray:
        """float32 [n, dim] of what ``encode`` returned; with ``width``, only the leading
        ``width`` components (what Milvus is loaded with: the rest is never decoded).

        In numpy, not FAISS: FAISS decodes in an OpenMP parallel region on every call, and a
        search decodes ~100 candidates; waking the thread team beside a busy Milvus server put
        4–5 ms on the server's p95 search latency (``compression_defaults_*_refine_sq8_*``).
        The codes are a little-endian bit stream of ``bits`` per component (FAISS's packing);
        a component is ``vmin + (code + 0.5) / (2^bits - 1) * vdiff``, FAISS's formula."""
        if self.index is None:
            return np.asarray(stored[:, :width], dtype=np.float32)
        codes = np.asarray(stored, dtype=np.uint8)
        bits = int(self.index.sq.bits)
        dim = min(width or self.index.d, int(self.index.d))
        if bits == 8:
            levels = codes[:, :dim].astype(np.float32)
        else:
            stream = np.unpackbits(codes, axis=1, bitorder="little")[:, : dim * bits]
            weights = (1 << np.arange(bits)).astype(np.float32)
            levels = stream.reshape(len(codes), dim, bits).astype(np.float32) @ weights
        vmin, vdiff = self._range
        return ((levels + 0.5) / float((1 << bits) - 1) * vdiff[:dim] + vmin[:dim]
                ).astype(np.float32)

    def as_kept(self, pca: np.ndarray) -> np.ndarray:
        """PCA vectors as the archive gives them back (coded, then decoded): what Milvus is
        loaded with and rescoring reads."""
        return self.decode(self.encode(pca))

    @functools.cached_property
    def _range(self) -> tuple[np.ndarray, np.ndarray]:
        """(vmin, vdiff) per component, as FAISS trained them (``sq.trained``)."""
        assert self.index is not None
        trained = faiss.vector_to_array(self.index.sq.trained).astype(np.float32)
        dim = int(self.index.d)
        return trained[:dim], trained[dim: 2 * dim]

    def to_bytes(self) -> bytes:
        """The serialised quantizer (empty for FP16): what an archive shard's schema carries."""
        return b"" if self.index is None else faiss.serialize_index(self.index).tobytes()

    @classmethod
    def from_bytes(cls, kind: str, data: bytes) -> Refiner:
        if not data:
            return FP16
        return cls(kind, faiss.deserialize_index(np.frombuffer(data, np.uint8)))

    def same_as(self, other: Refiner) -> bool:
        return self.kind == other.kind and self.to_bytes() == other.to_bytes()


FP16 = Refiner()


def train_refiner(kind: str, projected: np.ndarray) -> Refiner:
    """A ``kind`` quantizer fitted to vectors already in the codec's PCA space (``fp16``: none)."""
    if kind == "fp16":
        return FP16
    index = faiss.IndexScalarQuantizer(projected.shape[1], KINDS[kind], faiss.METRIC_L2)
    index.train(np.ascontiguousarray(projected, dtype=np.float32))
    return Refiner(kind, index)


def archive_table(pks: np.ndarray, pca: np.ndarray, refiner: Refiner = FP16) -> pa.Table:
    """The archived record of a shard: each passage's PCA vector as ``refiner`` codes it, what
    Milvus is loaded from (decoded) and rescoring reads; the quantizer rides in the schema."""
    stored = refiner.encode(pca)
    value = pa.float16() if refiner.index is None else pa.uint8()
    table = pa.table({"pk": pa.array(pks, pa.int64()),
                      refiner.column: numpy_to_fixed_list(stored, value)})
    if refiner.index is None:
        return table
    return table.replace_schema_metadata({METADATA_KEY: refiner.to_bytes(),
                                          KIND_KEY: refiner.kind.encode()})


def write_archive(url: str, pks: np.ndarray, pca: np.ndarray, refiner: Refiner = FP16) -> None:
    """Write one archive shard (Arrow IPC, uncompressed, one batch), atomically on a local root:
    a search host may have the file it replaces mapped."""
    table = archive_table(pks, pca, refiner)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))
    storage.write_bytes(url, sink.getvalue().to_pybytes())


def read_archive(url: str) -> tuple[np.ndarray, np.ndarray, Refiner]:
    """(pks, stored codes as written, the shard's refiner) of one archive shard."""
    if url.endswith(ARCHIVE_SUFFIX):
        table = pa.ipc.open_file(pa.py_buffer(storage.read_bytes(url))).read_all()
    else:  # a Parquet archive of an earlier version
        table = storage.read_parquet(url, columns=["pk"], optional=(FP16_COLUMN, CODES_COLUMN))
    refiner = _refiner(table.schema)
    if refiner.column not in table.column_names:
        raise ArchiveFormatError(f"{url} has no {refiner.column} column: it is not an archive "
                                 "shard of this version; re-run the ingest with --recreate")
    return (table.column("pk").to_numpy(), fixed_list_to_numpy(table.column(refiner.column),
                                                                refiner.dtype), refiner)


@dataclass(frozen=True)
class CodesRegion:
    """Where a local archive file keeps its codes: one row of ``width`` values (of
    ``refiner.dtype``) per pk, from byte ``offset``; what the rescoring store maps instead of
    copying them."""

    pks: np.ndarray
    offset: int
    width: int
    refiner: Refiner


def codes_region(path: str) -> CodesRegion | None:
    """The codes of the local ``.arrow`` archive at ``path``, located; None for a Parquet one."""
    if not path.endswith(ARCHIVE_SUFFIX):
        return None
    with pa.memory_map(path) as mapped:
        whole = mapped.read_buffer()
        reader = pa.ipc.open_file(whole)
        refiner = _refiner(reader.schema)
        batch = reader.get_batch(0) if reader.num_record_batches else None
        if batch is None or refiner.column not in batch.schema.names:
            return None  # empty, or not this format: read (and copied) the slow way
        codes = batch.column(refiner.column)
        width, itemsize = int(codes.type.list_size), np.dtype(refiner.dtype).itemsize
        first = codes.values.offset + codes.offset * width  # (0 in a batch read from a file)
        start = codes.values.buffers()[1].address - whole.address + first * itemsize
        return CodesRegion(batch.column("pk").to_numpy().copy(), int(start), width, refiner)


def _refiner(schema: pa.Schema) -> Refiner:
    meta = schema.metadata or {}
    return Refiner.from_bytes(meta.get(KIND_KEY, b"fp16").decode(), meta.get(METADATA_KEY, b""))


def read_archive_vectors(url: str, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pks, float32 PCA vectors) of one archive shard, decoded (their leading ``width``
    components only, when given)."""
    pks, stored, refiner = read_archive(url)
    return pks, refiner.decode(stored, width)
