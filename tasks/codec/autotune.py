"""Auto-tune the codec: the smallest PQ code whose rescored recall@10 meets a target.

Some sample vectors are held out as queries; exact FP32 inner-product top-k over the rest is the
truth. Each (PCA dim, M) candidate is tried the way a Milvus server serves it: FAISS IVF-PQ over the
PCA vectors (nlist and nprobe as the Milvus layer would use them, 8-bit codes) returns k × r
candidates, which are rescored with their fp16 PCA vectors, as the archive-backed search does.
The cheapest candidate (code bytes, then PCA dim) meeting the target wins.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from vecpress.infra.ivf import default_nlist
from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.recall import recall_at_k

K = 10


@dataclass(frozen=True)
class TuneRow:
    pca_dim: int
    pq_m: int
    code_bytes: int  # PQ code bytes per vector in the IVF_PQ index (ids and centroids not counted)
    recall_ann: float  # recall@10 of the IVF-PQ search alone
    recall_rescored: float  # after rescoring k × r candidates with fp16 PCA vectors
    seconds: float


@dataclass
class TuneResult:
    target: float
    queries: int
    base_vectors: int
    nlist: int
    nprobe: int
    rescore_factor: int
    rows: list[TuneRow] = field(default_factory=list)
    chosen: TuneRow | None = None
    met: bool = False

    def settings(self, base: CodecSettings) -> CodecSettings:
        """``base`` with the chosen PCA dim and M (unchanged when nothing was tried)."""
        if self.chosen is None:
            return base
        return base.model_copy(update={"pca_dim": self.chosen.pca_dim, "pq_m": self.chosen.pq_m})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["chosen"] = asdict(self.chosen) if self.chosen else None
        return data

    def lines(self) -> list[str]:
        """A plain-text table (for logs and the CLI)."""
        out = [f"auto-tune: recall@{K} target {self.target} after rescoring ×{self.rescore_factor}, "
               f"{self.queries} held-out queries over {self.base_vectors:,} vectors, IVF{self.nlist} "
               f"nprobe {self.nprobe}",
               f"{'PCA':>5} {'M':>4} {'bytes':>6} {'ANN':>7} {'rescored':>9}"]
        for r in self.rows:
            mark = " <- chosen" if r == self.chosen else ""
            out.append(f"{r.pca_dim:>5} {r.pq_m:>4} {r.code_bytes:>6} {r.recall_ann:>7.3f} "
                       f"{r.recall_rescored:>9.3f}{mark}")
        if not self.met:
            out.append(f"no candidate met {self.target}; chose the highest recall")
        return out


def autotune(sample: np.ndarray, codec: CodecSettings, milvus: MilvusSettings,
             target: float | None = None) -> TuneResult:
    """Try every (PCA dim, M) of the grid in ``codec`` with M dividing the dim; pick the cheapest."""
    target = target if target is not None else codec.recall_target
    if target is None:
        raise ValueError("auto-tune needs a recall target (codec.recall_target, e.g. 0.95)")
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    n_queries = codec.autotune_queries
    if len(sample) < 4 * n_queries:
        raise ValueError(f"auto-tune needs at least {4 * n_queries} sample vectors (it holds "
                         f"{n_queries} out as queries), got {len(sample)}; lower "
                         "codec.autotune_queries or raise codec.sample_size")
    order = np.random.default_rng(codec.seed).permutation(len(sample))
    queries, base = sample[order[:n_queries]], sample[order[n_queries:]]
    exact = faiss.IndexFlatIP(base.shape[1])
    exact.add(base)
    truth = exact.search(queries, K)[1]
    nlist = codec.ivf_nlist or default_nlist(len(base))
    result = TuneResult(target=target, queries=n_queries, base_vectors=len(base), nlist=nlist,
                        nprobe=milvus.nprobe, rescore_factor=milvus.rescore_factor)
    for dim in sorted({d for d in codec.autotune_pca_dims if d <= sample.shape[1]}):
        pca = faiss.PCAMatrix(sample.shape[1], dim, 0.0, codec.random_rotation)
        pca.train(base)
        xb, xq = pca.apply(base), pca.apply(queries)
        fp16 = xb.astype(np.float16)
        for m in sorted({m for m in codec.autotune_pq_m if dim % m == 0}):
            started = time.perf_counter()
            ann = _ivfpq_search(xb, xq, nlist, m, milvus, codec.seed)
            rescored = _rescore(fp16, xq, ann, K)
            result.rows.append(TuneRow(dim, m, m, recall_at_k(truth, ann.tolist(), K),
                                       recall_at_k(truth, rescored.tolist(), K),
                                       time.perf_counter() - started))
    if not result.rows:
        raise ValueError("auto-tune grid is empty: no M in codec.autotune_pq_m divides a PCA dim "
                         "in codec.autotune_pca_dims (<= the embedding dimension)")
    meeting = [r for r in result.rows if r.recall_rescored >= target]
    result.met = bool(meeting)
    result.chosen = min(meeting, key=lambda r: (r.code_bytes, r.pca_dim)) if meeting else \
        max(result.rows, key=lambda r: (r.recall_rescored, -r.code_bytes))
    return result


def _ivfpq_search(xb: np.ndarray, xq: np.ndarray, nlist: int, m: int, milvus: MilvusSettings,
                  seed: int) -> np.ndarray:
    """Candidate ids (k × r per query) from an IVF-PQ index like the one Milvus builds."""
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(xb.shape[1]), xb.shape[1], nlist, m, 8)
    index.cp.seed = index.pq.cp.seed = seed
    index.pq.cp.min_points_per_centroid = 1
    index.cp.min_points_per_centroid = 1
    index.train(xb)
    index.add(xb)
    index.nprobe = min(milvus.nprobe, nlist)
    return index.search(xq, K * milvus.rescore_factor)[1]


def _rescore(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, (q, ids) in enumerate(zip(queries, candidates, strict=True)):
        ids = ids[ids >= 0]
        dist = np.sum((vectors[ids].astype(np.float32) - q) ** 2, axis=1)
        top = ids[np.argsort(dist, kind="stable")[:k]]
        out[i] = np.pad(top, (0, k - len(top)), constant_values=-1)
    return out
