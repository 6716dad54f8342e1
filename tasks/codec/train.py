"""Codec training backends: a FAISS GPU build, k-means in torch (CUDA or CPU), or faiss-cpu.

Every backend fills the same FAISS objects, so encoding, saving and searching never depend on where
training ran. The torch backend runs FAISS's own k-means loop (``faiss.contrib.clustering.kmeans``)
on torch tensors with a torch nearest-centroid step, so a CUDA device speeds up training without a
FAISS GPU build; the trained centroids are then copied into the FAISS quantizers. PCA (one
covariance matrix) and the OPQ rotation are trained by FAISS on every backend.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import sys

import faiss
import numpy as np

from vecpress.infra.settings import CodecSettings

log = logging.getLogger(__name__)
KMEANS_ITERATIONS = 25  # FAISS's default for PQ and IVF training


def resolve_backend(choice: str) -> str:
    """``faiss-gpu``, ``faiss-cpu``, ``torch-cuda`` or ``torch-cpu`` for a setting of auto|faiss|torch."""
    if choice in ("auto", "faiss") and faiss.get_num_gpus() > 0:
        return "faiss-gpu"
    if choice == "faiss":
        return "faiss-cpu"
    cuda = _torch_cuda_available()
    if choice == "torch":
        return "torch-cuda" if cuda else "torch-cpu"
    return "torch-cuda" if cuda else "faiss-cpu"


def _torch_cuda_available() -> bool:
    """Whether torch sees a CUDA device. Without the NVIDIA driver's CUDA library it cannot, and
    its import is skipped: on a CPU-only machine that import took 1.5 of the codec fit's 4.2 s
    (20k MiniLM vectors), in every first run and again in the recall curve's worker."""
    if "torch" not in sys.modules and not _cuda_driver_loads():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _cuda_driver_loads() -> bool:
    """Whether the CUDA driver library loads, as torch opens it to find a device."""
    name = {"win32": "nvcuda.dll", "darwin": ""}.get(sys.platform, "libcuda.so.1")
    if not name:  # no CUDA on macOS
        return False
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def build_index(d_in: int, settings: CodecSettings, nbits: int) -> faiss.IndexPreTransform:
    """The untrained codec: PCA [→ OPQ] → IndexPQ, or IndexIVFPQ when ``ivf_nlist`` is set."""
    dim, m = settings.pca_dim, settings.pq_m
    if settings.ivf_nlist:
        inner: faiss.Index = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, settings.ivf_nlist, m,
                                              nbits)
        inner.cp.seed = settings.seed
    else:
        inner = faiss.IndexPQ(dim, m, nbits, faiss.METRIC_L2)
    inner.pq.cp.seed = settings.seed
    # FAISS warns once per sub-quantizer when the sample is small; the report says it once instead.
    inner.pq.cp.min_points_per_centroid = 1
    pca = faiss.PCAMatrix(d_in, dim, 0.0, settings.random_rotation)
    if not settings.opq:
        return faiss.IndexPreTransform(pca, inner)
    opq = faiss.OPQMatrix(dim, m)
    opq.verbose = False
    index = faiss.IndexPreTransform(opq, inner)
    index.prepend_transform(pca)
    return index


def train_index(sample: np.ndarray, settings: CodecSettings, nbits: int
                ) -> tuple[faiss.IndexPreTransform, str]:
    """Train the codec on ``sample`` with the configured backend; return (index, backend name)."""
    backend = resolve_backend(settings.train_backend)
    index = build_index(sample.shape[1], settings, nbits)
    faiss.omp_set_num_threads(faiss.omp_get_max_threads())
    opq = _opq(index)
    if opq is not None:
        # OPQ trains its own PQ; give it ours so small samples do not warn once per sub-space.
        opq_pq = faiss.ProductQuantizer(settings.pca_dim, settings.pq_m, nbits)
        opq_pq.cp.min_points_per_centroid = 1
        opq_pq.cp.seed = settings.seed
        opq.pq = opq_pq
    try:
        if backend == "faiss-gpu":
            _train_faiss_gpu(index, sample)
        elif backend.startswith("torch"):
            _train_torch(index, sample, "cuda" if backend == "torch-cuda" else "cpu", settings.seed)
        else:
            index.train(sample)
    finally:
        if opq is not None:
            opq.pq = None  # not serialised; must not outlive the Python object it points to
    return index, backend


def _opq(index: faiss.IndexPreTransform) -> faiss.OPQMatrix | None:
    for i in range(index.chain.size()):
        transform = faiss.downcast_VectorTransform(index.chain.at(i))
        if isinstance(transform, faiss.OPQMatrix):
            return transform
    return None


def _train_faiss_gpu(index: faiss.IndexPreTransform, sample: np.ndarray) -> None:
    """faiss-cpu's training with the k-means assignment steps on GPU 0 (OPQ stays on the CPU)."""
    res = faiss.StandardGpuResources()
    inner = faiss.downcast_index(index.index)
    inner.pq.assign_index = faiss.GpuIndexFlatL2(res, inner.pq.dsub)
    if isinstance(inner, faiss.IndexIVFPQ):
        inner.clustering_index = faiss.index_cpu_to_gpu(res, 0, faiss.IndexFlatL2(inner.d))
    try:
        index.train(sample)
    finally:  # the GPU indexes die with ``res``: never leave them referenced by the codec
        inner.pq.assign_index = None
        if isinstance(inner, faiss.IndexIVFPQ):
            inner.clustering_index = None


def _train_torch(index: faiss.IndexPreTransform, sample: np.ndarray, device: str, seed: int) -> None:
    import torch

    x = sample
    for i in range(index.chain.size()):  # PCA and OPQ: trained by FAISS, each on its input
        transform = faiss.downcast_VectorTransform(index.chain.at(i))
        transform.train(x)
        x = transform.apply(x)
    inner = faiss.downcast_index(index.index)
    data = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    if isinstance(inner, faiss.IndexIVFPQ):
        centroids = _kmeans(inner.nlist, data, seed)
        inner.quantizer.add(centroids.cpu().numpy())
        data = data - centroids[_nearest(data, centroids)]  # PQ encodes IVF residuals
    pq = inner.pq
    books = torch.stack([_kmeans(pq.ksub, data[:, j * pq.dsub:(j + 1) * pq.dsub].contiguous(),
                                 seed + j) for j in range(pq.M)])
    faiss.copy_array_to_vector(books.cpu().numpy().astype(np.float32).ravel(), pq.centroids)
    if isinstance(inner, faiss.IndexIVFPQ):
        inner.precompute_table()
    inner.is_trained = True
    index.is_trained = True


def _kmeans(k: int, data, seed: int):
    """FAISS's k-means loop over torch tensors (centroids stay on the data's device)."""
    from faiss.contrib.clustering import kmeans

    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress unconditionally
        return kmeans(k, _TorchAssign(data), niter=KMEANS_ITERATIONS, seed=seed, verbose=False)


def _nearest(x, centroids, block: int = 65_536):
    """Index of the nearest centroid per row (squared L2), computed in blocks to bound memory."""
    import torch

    c_norms = (centroids * centroids).sum(1)
    out = []
    for start in range(0, len(x), block):
        xb = x[start:start + block]
        out.append(torch.argmin(c_norms[None, :] - 2.0 * xb @ centroids.T, dim=1))
    return torch.cat(out)


class _TorchAssign:
    """The dataset interface ``faiss.contrib.clustering.kmeans`` expects, in pure torch."""

    def __init__(self, x) -> None:
        self.x = x

    def count(self) -> int:
        return int(self.x.shape[0])

    def dim(self) -> int:
        return int(self.x.shape[1])

    def get_subset(self, indices: np.ndarray):
        import torch

        return self.x[torch.as_tensor(indices, device=self.x.device)]

    def assign_to(self, centroids, weights=None):
        import torch

        assign = _nearest(self.x, centroids)
        dist = ((self.x - centroids[assign]) ** 2).sum(1)
        sums = torch.zeros_like(centroids)
        sums.index_add_(0, assign, self.x if weights is None else self.x * weights[:, None])
        return assign.cpu().numpy(), dist, sums
