"""PCA + FAISS product quantisation, fitted on a sample and applied shard by shard.

The codec is one FAISS ``IndexPreTransform(PCAMatrix, IndexPQ)``: PCA centres and rotates the
normalised embeddings (so distances afterwards are L2, not inner product), PQ compresses the PCA
vectors to ``pq_m`` codes. The serialised index plus a JSON training report is the codec artifact;
its id hashes the parameters and the training sample, so identical fits get identical ids.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa

from vecpress.infra import storage
from vecpress.infra.settings import CodecSettings


class CodecError(ValueError):
    """The codec cannot be fitted with these settings on this data."""


@dataclass
class Codec:
    index: faiss.IndexPreTransform
    report: dict

    @property
    def codec_id(self) -> str:
        return str(self.report["codec_id"])

    @property
    def pca(self) -> faiss.PCAMatrix:
        return faiss.downcast_VectorTransform(self.index.chain.at(0))

    @property
    def pq(self) -> faiss.ProductQuantizer:
        return faiss.downcast_index(self.index.index).pq

    @property
    def dim(self) -> int:
        return int(self.pca.d_out)

    @property
    def code_bytes(self) -> int:
        return int(self.pq.code_size)

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """PCA vectors (float32) of L2-normalised embeddings."""
        return self.pca.apply(np.ascontiguousarray(embeddings, dtype=np.float32))

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """PQ codes, uint8 [n, code_bytes]."""
        return self.index.sa_encode(np.ascontiguousarray(embeddings, dtype=np.float32))

    def save(self, directory: str) -> None:
        storage.write_bytes(storage.join(directory, "codec.faiss"),
                            faiss.serialize_index(self.index).tobytes())
        storage.write_json(storage.join(directory, "report.json"), self.report)

    @classmethod
    def load(cls, directory: str) -> Codec:
        raw = np.frombuffer(storage.read_bytes(storage.join(directory, "codec.faiss")), np.uint8)
        index = faiss.deserialize_index(raw)  # already the concrete IndexPreTransform
        return cls(index=index, report=storage.read_json(storage.join(directory, "report.json")))


def fit_codec(sample: np.ndarray, settings: CodecSettings) -> Codec:
    """Train PCA and PQ on ``sample`` (float32 [n, d]); report explained variance and timing."""
    n, d_in = sample.shape
    if settings.pca_dim > d_in:
        raise CodecError(f"codec.pca_dim ({settings.pca_dim}) exceeds the embedding dimension "
                         f"({d_in}); choose pca_dim <= {d_in}")
    if n < 2 * settings.pq_m:
        raise CodecError(f"only {n} vectors to train the codec on; ingest at least "
                         f"{2 * settings.pq_m} passages before compressing")
    # PQ needs at least 2^nbits training points per sub-quantizer; small corpora get fewer bits.
    nbits = min(settings.pq_nbits, int(math.log2(n)))
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    faiss.omp_set_num_threads(faiss.omp_get_max_threads())
    started = time.perf_counter()
    pca = faiss.PCAMatrix(d_in, settings.pca_dim, 0.0, False)
    pq_index = faiss.IndexPQ(settings.pca_dim, settings.pq_m, nbits, faiss.METRIC_L2)
    pq_index.pq.cp.seed = settings.seed
    # FAISS warns once per sub-quantizer when the sample is small; the report says it once instead.
    pq_index.pq.cp.min_points_per_centroid = 1
    index = faiss.IndexPreTransform(pca, pq_index)
    index.train(sample)
    seconds = time.perf_counter() - started
    eig = faiss.vector_to_array(pca.eigenvalues)
    projected = pca.apply(sample)
    recon = pq_index.sa_decode(pq_index.sa_encode(projected))
    report = {
        "codec_id": _codec_id(settings, nbits, sample),
        "input_dim": d_in,
        "pca_dim": settings.pca_dim,
        "pq_m": settings.pq_m,
        "pq_nbits": nbits,
        "code_bytes": int(pq_index.pq.code_size),
        "train_vectors": n,
        "explained_variance": float(eig[: settings.pca_dim].sum() / max(eig.sum(), 1e-12)),
        "pq_relative_error": float(np.mean(np.sum((projected - recon) ** 2, axis=1)) /
                                   max(float(np.mean(np.sum(projected**2, axis=1))), 1e-12)),
        "train_seconds": seconds,
        # Below ~39 points per centroid k-means codebooks are undertrained (FAISS's own threshold).
        "undertrained": n < 39 * 2**nbits,
    }
    return Codec(index=index, report=report)


def _codec_id(settings: CodecSettings, nbits: int, sample: np.ndarray) -> str:
    digest = hashlib.sha256(f"{settings.pca_dim}|{settings.pq_m}|{nbits}|{settings.seed}".encode())
    digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


ARCHIVE_FIELDS = ("pk", "pq_codes", "pca_fp16")


def archive_table(pks: np.ndarray, codes: np.ndarray, pca: np.ndarray) -> pa.Table:
    """The compressed record of a shard: PQ codes and fp16 PCA vectors (for rescoring)."""
    return pa.table({
        "pk": pa.array(pks, pa.int64()),
        "pq_codes": numpy_to_fixed_list(codes, pa.uint8()),
        "pca_fp16": numpy_to_fixed_list(pca.astype(np.float16), pa.float16()),
    })


def numpy_to_fixed_list(matrix: np.ndarray, value_type: pa.DataType) -> pa.FixedSizeListArray:
    """A FixedSizeList column (one row per matrix row) without Python objects."""
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), value_type),
                                             matrix.shape[1])


def fixed_list_to_numpy(column: pa.ChunkedArray | pa.Array, dtype: type) -> np.ndarray:
    """[n, width] array from a FixedSizeList column without Python objects."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    width = arr.type.list_size
    flat = arr.flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=dtype).reshape(-1, width) if len(arr) else \
        np.empty((0, width), dtype=dtype)
