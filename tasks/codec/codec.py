"""PCA + FAISS product quantisation, fitted on a sample and applied shard by shard.

The codec is one FAISS ``IndexPreTransform``: PCA centres and rotates the embeddings (searched by L2,
or by inner product for a dot-product model: ``tasks.similarity``), an optional OPQ rotation balances the PQ
sub-spaces, and PQ (optionally on the residuals of an IVF coarse quantizer) compresses the vectors
to ``pq_m`` codes. Training backends live in ``tasks.codec.train``.
The serialised index plus a JSON training report is the codec artifact; its id hashes the
parameters and the training sample, so identical fits get identical ids.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from dataclasses import dataclass

import faiss
import numpy as np

from vecpress.infra import storage
from vecpress.infra.settings import CodecSettings
from vecpress.tasks.codec.refine import FP16, Refiner, train_refiner
from vecpress.tasks.codec.shape import milvus_width, resolve_shape, split_holdout


class CodecError(ValueError):
    """The codec cannot be fitted with these settings on this data."""


@dataclass
class Codec:
    """``IndexPreTransform(PCAMatrix [, OPQMatrix], IndexPQ | IndexIVFPQ)`` plus its training report.

    ``project`` applies the whole transform chain: PCA, then the OPQ rotation when there is one (a
    small collection's exact codec, ``fit_exact``, has an identity transform and no PQ). OPQ
    is orthogonal, so L2 distances are those of PCA space, and Milvus's own PQ also profits from the
    balanced sub-spaces of the rotated vectors it stores.
    """

    index: faiss.IndexPreTransform
    report: dict
    refiner: Refiner = FP16  # how the archive and the rescoring store code the PCA vectors

    @property
    def codec_id(self) -> str:
        return str(self.report["codec_id"])

    @property
    def pca(self) -> faiss.LinearTransform:
        """The first transform: a ``PCAMatrix`` (an identity ``LinearTransform`` when exact)."""
        return faiss.downcast_VectorTransform(self.index.chain.at(0))

    @property
    def quantizer(self) -> faiss.Index:
        """The inner ``IndexPQ`` or ``IndexIVFPQ``."""
        return faiss.downcast_index(self.index.index)

    @property
    def similarity(self) -> str:
        """The model's similarity function the codec was fitted for (codecs of earlier versions:
        cosine, the only one they served)."""
        return str(self.report.get("similarity", "cosine"))

    @property
    def nlist(self) -> int | None:
        return int(self.quantizer.nlist) if hasattr(self.quantizer, "nlist") else None

    @property
    def dim(self) -> int:
        return int(self.pca.d_out)

    @property
    def milvus_dim(self) -> int:
        """The leading components Milvus holds (``codec.milvus_dim``; codecs before it: all)."""
        return int(self.report.get("milvus_dim") or self.dim)

    def for_milvus(self, vectors: np.ndarray) -> np.ndarray:
        """The part of PCA vectors (or projected queries) Milvus stores and searches."""
        width = self.milvus_dim
        return vectors if width == vectors.shape[1] else np.ascontiguousarray(vectors[:, :width])

    @property
    def code_bytes(self) -> int:
        return int(self.index.sa_code_size())

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Vectors in the searched space (float32): PCA, then the rotation if any.

        The chain is one affine map, applied with numpy: FAISS's own ``apply`` starts its OpenMP
        threads for every call, which costs a single search query milliseconds.
        """
        matrix, bias = self._affine
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        return np.ascontiguousarray(x @ matrix + bias, dtype=np.float32)

    def project_queries(self, embeddings: np.ndarray) -> np.ndarray:
        """``project``, row by row, so that a query's bits do not depend on the batch it came in:
        BLAS rounds a product of many rows differently from one row's, and a micro-batched query
        must find what it finds alone (its IVF candidates can flip on the last bit).

        A dot-product model's queries are not centred: (x − μ)·q ranks as x·q does, and the
        score adds back μ·q (``query_offsets``)."""
        matrix, bias = self._affine
        x = np.ascontiguousarray(embeddings, dtype=np.float32)
        out = np.empty((len(x), matrix.shape[1]), dtype=np.float32)
        for i, row in enumerate(x):
            np.matmul(row, matrix, out=out[i])
        return out if self.similarity == "dot" else out + bias

    def query_offsets(self, embeddings: np.ndarray) -> np.ndarray:
        """What each query's score adds to the PCA-space inner product: μ·q for a dot-product
        model (μ: the PCA's mean, which the stored passages have had taken off), else 0."""
        if self.similarity != "dot" or not isinstance(self.pca, faiss.PCAMatrix):
            return np.zeros(len(embeddings), dtype=np.float64)
        mean = faiss.vector_to_array(self.pca.mean).astype(np.float64)
        return np.asarray(embeddings, dtype=np.float64) @ mean

    @functools.cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, b) with project(x) = x M + b: the chain's linear transforms composed."""
        dim = self.index.chain.at(0).d_in if self.index.chain.size() else self.index.d
        matrix, bias = np.eye(dim, dtype=np.float64), np.zeros(dim, dtype=np.float64)
        for i in range(self.index.chain.size()):
            step = faiss.downcast_VectorTransform(self.index.chain.at(i))
            a = faiss.vector_to_array(step.A).reshape(step.d_out, step.d_in).astype(np.float64)
            b = faiss.vector_to_array(step.b).astype(np.float64) if step.have_bias else 0.0
            matrix, bias = matrix @ a.T, bias @ a.T + b
        return matrix.astype(np.float32), np.asarray(bias, dtype=np.float32)

    def encode(self, embeddings: np.ndarray) -> np.ndarray:
        """Codes, uint8 [n, code_bytes] (with IVF: the list number first, then the PQ code)."""
        return self.index.sa_encode(np.ascontiguousarray(embeddings, dtype=np.float32))

    def reconstruct(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings as the codec sees them after encoding (PCA and PQ losses included)."""
        return self.index.sa_decode(self.encode(embeddings))

    def save(self, directory: str) -> None:
        """The index without the PCA's training state: ``PCAMatrix.PCAMat`` (d_in² floats, 590 KB
        for a 384-d model) only serves ``train``; projecting and decoding read ``A`` and ``b``."""
        if is_exact(self):  # its identity matrix (d² floats) is rebuilt on load: the flat part
            index = faiss.clone_index(faiss.downcast_index(self.index.index))
        else:
            index = faiss.clone_index(self.index)
            if index.chain.size() and isinstance(self.pca, faiss.PCAMatrix):
                faiss.downcast_VectorTransform(index.chain.at(0)).PCAMat.clear()
        storage.write_bytes(storage.join(directory, "codec.faiss"),
                            faiss.serialize_index(index).tobytes())
        if self.refiner.index is not None:
            storage.write_bytes(storage.join(directory, "refine.faiss"), self.refiner.to_bytes())
        storage.write_json(storage.join(directory, "report.json"), self.report)

    @classmethod
    def load(cls, directory: str) -> Codec:
        raw = np.frombuffer(storage.read_bytes(storage.join(directory, "codec.faiss")), np.uint8)
        index = faiss.deserialize_index(raw)  # already the concrete IndexPreTransform
        report = storage.read_json(storage.join(directory, "report.json"))
        if not isinstance(index, faiss.IndexPreTransform):  # an exact codec: its flat part
            index = _identity(index)
        kind = str(report.get("refine", "fp16"))  # codecs before the refine tier: FP16
        refiner = FP16 if kind == "fp16" else Refiner.from_bytes(
            kind, storage.read_bytes(storage.join(directory, "refine.faiss")))
        return cls(index=index, report=report, refiner=refiner)


def fit_exact(sample: np.ndarray, reason: str, similarity: str = "cosine") -> Codec:
    """The codec of a collection too small to fit one: whole vectors, no PCA, no PQ.

    A small collection loses nothing by keeping its vectors (1,000 x 384-d is 1.5 MB) and is
    searched exactly (a FLAT index). The identity transform keeps the ``Codec`` interface, so every
    stage treats it like a fitted codec; once the collection holds ``codec.min_fit_vectors`` the
    next ingest fits a real codec into a new build (``tasks.codec.choose.outgrown``).
    """
    n, d = sample.shape
    index = _identity(faiss.IndexFlatL2(d))
    digest = hashlib.sha256(f"exact|{d}{_similarity_key(similarity)}".encode()).hexdigest()[:16]
    return Codec(index=index, report={
        "codec_id": f"exact-{digest}", "kind": "exact", "reason": reason, "backend": "none",
        "input_dim": d, "pca_dim": d, "pq_m": 0, "pq_nbits": 0, "opq": False,
        "random_rotation": False, "ivf_nlist": None, "code_bytes": 4 * d, "train_vectors": n,
        "explained_variance": 1.0, "pq_relative_error": 0.0, "train_seconds": 0.0,
        "undertrained": False, "similarity": similarity, "refine": "fp16", "refine_bytes": 2 * d})


def _identity(flat: faiss.Index) -> faiss.IndexPreTransform:
    """``flat`` behind an identity transform: the exact codec's index (saved without the
    transform, whose d × d matrix would be 590 KB for a 384-d model)."""
    identity = faiss.LinearTransform(flat.d, flat.d, False)
    faiss.copy_array_to_vector(np.eye(flat.d, dtype=np.float32).ravel(), identity.A)
    identity.is_trained = True
    return faiss.IndexPreTransform(identity, flat)


def _similarity_key(similarity: str) -> str:
    """The similarity's part of a codec id ("" for cosine: ids of earlier codecs stay valid)."""
    return "" if similarity == "cosine" else f"|{similarity}"


def _width_key(settings: CodecSettings) -> str:
    """Milvus's width in a codec id ("" when it holds every component: earlier ids stay valid)."""
    width = milvus_width(settings)
    return "" if width == settings.pca_dim else f"|milvus_dim={width}"


def _refine_key(kind: str) -> str:
    """The refine tier's part of a codec id ("" for FP16: ids of earlier codecs stay valid)."""
    return "" if kind == "fp16" else f"|refine={kind}"


def is_exact(codec: Codec) -> bool:
    return codec.report.get("kind") == "exact"


def relative_error(original: np.ndarray, reconstructed: np.ndarray) -> float:
    """Mean squared reconstruction error relative to the mean squared norm."""
    return float(np.mean(np.sum((original - reconstructed) ** 2, axis=1)) /
                 max(float(np.mean(np.sum(original**2, axis=1))), 1e-12))


def fit_codec(sample: np.ndarray, settings: CodecSettings, autotune: dict | None = None,
              similarity: str = "cosine") -> Codec:
    """Train PCA [+ OPQ] [+ IVF] + PQ on ``sample`` (float32 [n, d]) with the chosen backend, for
    a model of this ``similarity`` (``tasks.similarity``; it decides how queries are projected).

    The report records the backend, explained variance, PQ and total reconstruction error, train
    seconds and options; ``autotune`` (a table from ``tasks.codec.autotune``) is stored with it.
    """
    from vecpress.tasks.codec.train import train_index

    settings = resolve_shape(sample, settings)  # unchanged when pca_dim is configured
    n, d_in = sample.shape
    if settings.pca_dim > d_in:
        raise CodecError(f"codec.pca_dim ({settings.pca_dim}) exceeds the embedding dimension "
                         f"({d_in}); choose pca_dim <= {d_in}")
    if n < 2 * settings.pq_m:
        raise CodecError(f"only {n} vectors to train the codec on; ingest at least "
                         f"{2 * settings.pq_m} passages before compressing")
    if settings.ivf_nlist and n < 2 * settings.ivf_nlist:
        raise CodecError(f"codec.ivf_nlist ({settings.ivf_nlist}) needs at least "
                         f"{2 * settings.ivf_nlist} training vectors, got {n}; lower ivf_nlist "
                         "(about 4 * sqrt(rows)) or leave it unset")
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    train, check = split_holdout(sample, settings.seed)
    # PQ needs at least 2^nbits training points per sub-quantizer; small corpora get fewer bits.
    nbits = min(settings.pq_nbits, int(math.log2(len(train))))
    started = time.perf_counter()
    index, backend = train_index(train, settings, nbits)
    seconds = time.perf_counter() - started
    codec = Codec(index=index, report={})
    codec.refiner = train_refiner(settings.refine, codec.project(train))
    eig = faiss.vector_to_array(codec.pca.eigenvalues)
    projected = codec.project(check)
    recon = codec.quantizer.sa_decode(codec.quantizer.sa_encode(projected))
    codec.report = {
        "codec_id": _codec_id(settings, nbits, backend, sample, similarity),
        "similarity": similarity,
        "backend": backend,
        "input_dim": d_in,
        "pca_dim": settings.pca_dim,
        "pq_m": settings.pq_m,
        "pq_nbits": nbits,
        "random_rotation": settings.random_rotation,
        "opq": settings.opq,
        "ivf_nlist": settings.ivf_nlist,
        "code_bytes": codec.code_bytes,
        "train_vectors": len(train),
        # Errors are measured on sample vectors held out of training: codebooks fit their own
        # training vectors better than any new ones, which would make every drift check fail.
        "error_vectors": len(check),
        "error_on": "held-out sample" if check is not train else "training sample",
        "explained_variance": float(eig[: settings.pca_dim].sum() / max(eig.sum(), 1e-12)),
        "pq_relative_error": relative_error(projected, recon),
        "milvus_dim": milvus_width(settings),
        # The rescoring tier: its codes' bytes per vector and error in PCA space.
        "refine": settings.refine,
        "refine_bytes": codec.refiner.bytes_per_vector(codec.dim),
        "refine_relative_error": relative_error(
            projected, codec.refiner.as_kept(projected)),
        # PCA and PQ losses together, in embedding space: what drift checks compare against.
        "reconstruction_relative_error": relative_error(check, codec.reconstruct(check)),
        "train_seconds": seconds,
        # Below ~39 points per centroid k-means codebooks are undertrained (FAISS's own threshold).
        "undertrained": len(train) < 39 * 2**nbits,
    }
    if autotune is not None:
        codec.report["autotune"] = autotune
    return codec


def _codec_id(settings: CodecSettings, nbits: int, backend: str, sample: np.ndarray,
              similarity: str) -> str:
    params = f"{settings.pca_dim}|{settings.pq_m}|{nbits}|{settings.seed}|{settings.opq}|" \
             f"{settings.ivf_nlist}|{backend.split('-')[0]}|{settings.random_rotation}" \
             f"{_similarity_key(similarity)}{_refine_key(settings.refine)}" \
             f"{_width_key(settings)}"
    digest = hashlib.sha256(params.encode())
    digest.update(sample.tobytes())
    return digest.hexdigest()[:16]
