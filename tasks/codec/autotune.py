"""Auto-tune the codec and its search: the fewest index bytes whose rescored recall@10 meets a
target within a latency budget.

Some sample vectors are held out as queries; exact FP32 top-k over the rest by the model's
similarity (``tasks.similarity``) is the truth. Each candidate is served the way a Milvus server
serves it: FAISS IVF-PQ over the PCA vectors (8-bit codes; nlist as the index plan sizes it for
the sample) returns k × r candidates from ``nprobe`` lists, rescored with their PCA vectors as
the rescoring tier keeps them (``tasks.codec.refine``: scalar-quantizer codes or FP16).
The grid is PCA dim × random rotation × M (one IVF-PQ trained for each; the coarse lists are
trained once per PCA space) × probed share of the lists × rescoring factor × rescoring tier
(searches only). Latency is measured: single-threaded milliseconds per query of the simulated
search plus its rescoring, on this machine. The cheapest candidate (index code plus rescoring
tier bytes, then latency) that meets the target within ``codec.autotune_latency_ms`` wins; the run
report shows it with the Pareto front.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import faiss
import numpy as np

from vecpress.infra.index_plan import plan_index
from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.codec.refine import train_refiner
from vecpress.tasks.codec.shape import largest_divisor, milvus_width
from vecpress.tasks.recall import recall_at_k
from vecpress.tasks.similarity import distances

K = 10


@dataclass(frozen=True)
class TuneRow:
    pca_dim: int
    pq_m: int
    code_bytes: int  # PQ code bytes per vector in the IVF_PQ index (ids and centroids not counted)
    recall_ann: float  # recall@10 of the IVF-PQ search alone
    recall_rescored: float  # after rescoring k × r candidates with the ``refine`` tier
    seconds: float  # training and searching this row took
    rotation: bool = False
    nlist: int = 0
    nprobe: int = 0
    probe_share: float = 1.0  # nprobe / nlist
    rescore_factor: int = 8
    ms_per_query: float = 0.0  # simulated search + rescoring, one thread
    refine: str = "fp16"  # the rescoring tier's codes (``codec.refine``)
    refine_bytes: int = 0  # its bytes per vector, kept in the archive and the rescoring store
    milvus_dim: int = 0  # the leading PCA components the IVF-PQ (Milvus) holds

    @property
    def bytes(self) -> int:
        """What a vector costs this configuration: its index code plus its rescoring codes."""
        return self.code_bytes + self.refine_bytes


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
    latency_budget_ms: float | None = None
    pareto: list[TuneRow] = field(default_factory=list)
    budget_met: bool = True  # some configuration ran within the latency budget

    def settings(self, base: CodecSettings) -> CodecSettings:
        """``base`` with the chosen PCA dim, M, rotation and rescoring tier (unchanged when
        nothing was tried)."""
        if self.chosen is None:
            return base
        return base.model_copy(update={"pca_dim": self.chosen.pca_dim, "pq_m": self.chosen.pq_m,
                                       "random_rotation": self.chosen.rotation,
                                       "refine": self.chosen.refine})

    def to_dict(self) -> dict:
        data = asdict(self)
        data["chosen"] = asdict(self.chosen) if self.chosen else None
        return data

    def lines(self, report_only: bool = False) -> list[str]:
        """A plain-text table of the Pareto front and the choice (for logs and the CLI).

        ``report_only``: this is the recall-vs-bytes curve around a configured codec
        (``choose.recall_curve``), which chose nothing: it says so, shows every configuration
        measured and marks the configured one, so that no reader takes it for an auto-tune."""
        budget = f", ≤ {self.latency_budget_ms} ms/query" if self.latency_budget_ms else ""
        measured = (f"{self.queries} held-out queries over {self.base_vectors:,} vectors, "
                    f"{len(self.rows)} configurations")
        if report_only:
            title = (f"recall@{K} vs bytes around the configured codec (report only; set "
                     f"codec.recall_target / --recall-target to let it choose): {measured}:")
        else:
            title = (f"auto-tune: recall@{K} target {self.target}{budget}, {measured}; "
                     "Pareto front (index + rescoring bytes, recall, latency):")
        out = [title,
               f"{'PCA':>5} {'rot':>4} {'M':>4} {'bytes':>6} {'rescoring':>10} {'nprobe':>10} "
               f"{'×r':>4} {'ANN':>7} {'rescored':>9} {'ms/q':>6}"]
        shown = self.rows if report_only else self.pareto + (
            [self.chosen] if self.chosen and self.chosen not in self.pareto else [])
        label = " <- configured" if report_only else " <- chosen"
        for r in sorted(shown, key=lambda r: (r.bytes, r.ms_per_query)):
            mark = label if r == self.chosen else ""
            out.append(f"{r.pca_dim:>5} {'yes' if r.rotation else 'no':>4} {r.pq_m:>4} "
                       f"{r.code_bytes:>6} {f'{r.refine} {r.refine_bytes}':>10} "
                       f"{f'{r.nprobe}/{r.nlist}':>10} {r.rescore_factor:>4} "
                       f"{r.recall_ann:>7.3f} {r.recall_rescored:>9.3f} {r.ms_per_query:>6.2f}{mark}")
        if not self.budget_met:
            out.append(f"no configuration ran within {self.latency_budget_ms} ms/query; the "
                       "budget was ignored")
        if not self.met and not report_only:
            out.append(f"no candidate met {self.target}; chose the highest recall")
        return out


def _grid_dims(codec: CodecSettings, d: int) -> list[int]:
    return sorted({min(x, d) for x in codec.autotune_pca_dims})


def _grid_ms(codec: CodecSettings, dim: int) -> list[int]:
    """M values of the grid that divide ``dim``; a dimension none divides (a narrow model's)
    gets its largest divisor up to the grid's widest M instead."""
    fits = {m for m in codec.autotune_pq_m if dim % m == 0}
    return sorted(fits or {largest_divisor(dim, max(codec.autotune_pq_m))})


FULL_PQ_TRAINING = (25, 256)  # FAISS's own: 25 iterations, up to 65,536 vectors at 8 bits


def autotune(sample: np.ndarray, codec: CodecSettings, milvus: MilvusSettings,
             target: float | None = None, similarity: str = "cosine",
             pq_training: tuple[int, int] = FULL_PQ_TRAINING) -> TuneResult:
    """Measure every configuration of the grid in ``codec``; pick the cheapest that qualifies.
    Searches rank by the model's ``similarity``, as the collection's searches will.
    ``pq_training``: (k-means iterations, at most this many training vectors a centroid) of each
    candidate's PQ codebooks; FAISS's defaults unless a report only estimates (``recall_curve``)."""
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
    exact = faiss.IndexFlatL2(base.shape[1]) if similarity == "euclidean" else \
        faiss.IndexFlatIP(base.shape[1])  # cosine of unit vectors: their inner product
    exact.add(base)
    truth = exact.search(queries, K)[1]
    # The server's IVF_PQ as the index plan sizes it for this many vectors (the codec's own nlist
    # when it has one): the configured point, and the lists every candidate is trained with.
    plan = plan_index(milvus.model_copy(update={"index_type": "IVF_PQ"}), len(base), 8, 8,
                      codec.ivf_nlist)
    nlist = int(plan.nlist or 1)
    result = TuneResult(target=target, queries=n_queries, base_vectors=len(base), nlist=nlist,
                        nprobe=plan.nprobe, rescore_factor=plan.rescore_factor,
                        latency_budget_ms=codec.autotune_latency_ms)
    probes = sorted({max(1, math.ceil(s * nlist)) for s in codec.autotune_probe_shares}
                    | {min(plan.nprobe, nlist)})
    factors = sorted(set(codec.autotune_rescore_factors) | {plan.rescore_factor})
    for dim in _grid_dims(codec, sample.shape[1]):
        for rotation in sorted(set(codec.autotune_rotation)):
            pca = faiss.PCAMatrix(sample.shape[1], dim, 0.0, rotation)
            pca.train(base)
            xb, xq = pca.apply(base), pca.apply(queries)
            if similarity == "dot":  # queries uncentred, as Codec.project_queries
                xq = xq - pca.apply(np.zeros((1, sample.shape[1]), dtype=np.float32))
            lists: dict[int, np.ndarray] = {}  # the coarse lists of each width Milvus holds
            kept: dict[str, tuple[np.ndarray, int]] = {}  # kind: (base as kept, its bytes)
            for kind in sorted(set(codec.autotune_refine)):
                tier = train_refiner(kind, xb)
                kept[kind] = (tier.as_kept(xb), tier.bytes_per_vector(dim))
            for m in _grid_ms(codec, dim):
                width = milvus_width(codec.model_copy(update={"pca_dim": dim, "pq_m": m}))
                if width not in lists:
                    lists[width] = _coarse_lists(np.ascontiguousarray(xb[:, :width]), nlist,
                                                 codec.seed)
                result.rows += _measure(xb, xq, kept, truth, lists[width], m, probes, factors,
                                        rotation, codec.seed, similarity, pq_training)
    if not result.rows:
        raise ValueError("auto-tune grid is empty: set codec.autotune_pca_dims and "
                         "codec.autotune_pq_m")
    _choose(result, codec.autotune_latency_ms)
    return result


def _coarse_lists(xb: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """The IVF lists' centroids, trained once per PCA space and shared by every M."""
    kmeans = faiss.Kmeans(xb.shape[1], nlist, niter=20, seed=seed, min_points_per_centroid=1)
    kmeans.train(xb)
    return np.ascontiguousarray(kmeans.centroids, dtype=np.float32)


def _measure(xb: np.ndarray, xq: np.ndarray, kept: dict[str, tuple[np.ndarray, int]],
             truth: np.ndarray, coarse: np.ndarray, m: int, probes: list[int],
             factors: list[int], rotation: bool, seed: int, similarity: str,
             pq_training: tuple[int, int]) -> list[TuneRow]:
    """One IVF-PQ index over the leading components Milvus holds (the width of ``coarse``; PQ
    trained on the residuals of its lists, ``pq_training`` as ``autotune``'s), searched at every
    nprobe and rescoring factor, rescored over every component with each tier of ``kept`` (kind:
    the base vectors as that tier decodes them, its bytes per vector), with the Milvus metric of
    ``similarity``."""
    started = time.perf_counter()
    dot = similarity == "dot"
    width = coarse.shape[1]
    xa, xqa = np.ascontiguousarray(xb[:, :width]), np.ascontiguousarray(xq[:, :width])
    quantizer = faiss.IndexFlatIP(width) if dot else faiss.IndexFlatL2(width)
    quantizer.add(coarse)
    nlist = len(coarse)
    index = faiss.IndexIVFPQ(quantizer, width, nlist, m, 8,
                             faiss.METRIC_INNER_PRODUCT if dot else faiss.METRIC_L2)
    index.pq.cp.seed = seed
    index.pq.cp.min_points_per_centroid = 1
    index.pq.cp.niter, index.pq.cp.max_points_per_centroid = pq_training
    index.train(xa)  # the quantizer is trained and full: only the PQ codebooks are
    index.add(xa)
    rows = []
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # latency per query as one search thread sees it
    try:
        for nprobe in probes:
            index.nprobe = min(nprobe, nlist)
            for factor in factors:
                t = time.perf_counter()
                ann = index.search(xqa, K * factor)[1]
                ann_ms = 1e3 * (time.perf_counter() - t) / len(xq)
                for kind, (vectors, tier_bytes) in kept.items():
                    t = time.perf_counter()
                    rescored = _rescore(vectors, xq, ann, K, similarity)
                    ms = ann_ms + 1e3 * (time.perf_counter() - t) / len(xq)
                    rows.append(TuneRow(
                        xb.shape[1], m, m, recall_at_k(truth, ann[:, :K].tolist(), K),
                        recall_at_k(truth, rescored.tolist(), K), 0.0, rotation, nlist,
                        index.nprobe, round(index.nprobe / nlist, 4), factor, ms, kind,
                        tier_bytes, width))
    finally:
        faiss.omp_set_num_threads(threads)
    seconds = time.perf_counter() - started
    return [TuneRow(**{**asdict(r), "seconds": seconds / len(rows)}) for r in rows]


def _choose(result: TuneResult, budget_ms: float | None) -> None:
    """The cheapest qualifying row (index and rescoring bytes, then latency); the Pareto front
    over all rows."""
    rows = result.rows
    result.pareto = [r for r in rows if not any(
        o.bytes <= r.bytes and o.recall_rescored >= r.recall_rescored and
        o.ms_per_query <= r.ms_per_query and o != r and
        (o.bytes, -o.recall_rescored, o.ms_per_query) !=
        (r.bytes, -r.recall_rescored, r.ms_per_query) for o in rows)]
    affordable = [r for r in rows if budget_ms is None or r.ms_per_query <= budget_ms]
    result.budget_met = bool(affordable)
    affordable = affordable or rows
    meeting = [r for r in affordable if r.recall_rescored >= result.target]
    result.met = bool(meeting)
    result.chosen = min(meeting, key=lambda r: (r.bytes, r.ms_per_query, r.pca_dim)) \
        if meeting else max(affordable, key=lambda r: (r.recall_rescored, -r.bytes))


def _rescore(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int,
             similarity: str) -> np.ndarray:
    out = np.empty((len(queries), k), dtype=np.int64)
    for i, (q, ids) in enumerate(zip(queries, candidates, strict=True)):
        ids = ids[ids >= 0]
        dist = distances(vectors[ids], q, similarity)
        top = ids[np.argsort(dist, kind="stable")[:k]]
        out[i] = np.pad(top, (0, k - len(top)), constant_values=-1)
    return out
