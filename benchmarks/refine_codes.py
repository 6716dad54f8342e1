"""Which codes can rescore instead of FP16 vectors: recall@10 of each refine tier, per byte.

Issue 26 asks for a rescoring tier of ≤ 200 B a vector (a quarter of today's FP16 PCA vectors),
trained with FAISS. This measures the candidates before any code changes: in the PCA space an
ingest fits (99% of the variance kept), an IVF-PQ index proposes ``k × factor`` candidates
(the Milvus tier), and each refine tier re-ranks them (FAISS ``IndexRefine``): FP16 (today),
8-, 6- and 4-bit scalar quantisers, and (``--pq``) PQ codes of a few widths. Recall@10 is against
exact FP32 inner-product search over the full embeddings; held-out passages are the queries.
Writes benchmarks/results/refine_codes_<label>.json.

    .venv/bin/python benchmarks/refine_codes.py [--passages 4200] [--variant int8] [--pq 40 80]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import faiss
import numpy as np
from embedded import K, embedded_corpus, exact_top_k, split
from harness import RESULTS, machine, write_results


def pca_space(corpus: np.ndarray, queries: np.ndarray, keep: float = 0.99
              ) -> tuple[np.ndarray, np.ndarray, int]:
    """Corpus and queries in the PCA space that keeps ``keep`` of the corpus's variance,
    rounded up to a multiple of 32 dimensions (as an ingest's default codec)."""
    full = faiss.PCAMatrix(corpus.shape[1], corpus.shape[1])
    full.train(corpus)
    eig = faiss.vector_to_array(full.eigenvalues)
    dim = int(np.searchsorted(np.cumsum(eig) / eig.sum(), keep) + 1)
    dim = min(corpus.shape[1], -(-dim // 32) * 32)
    pca = faiss.PCAMatrix(corpus.shape[1], dim)
    pca.train(corpus)
    # Rotated, not centred: a centred inner product ranks differently (the codec corrects for
    # the mean; this probe keeps the raw inner product instead).
    origin = pca.apply(np.zeros((1, corpus.shape[1]), np.float32))
    return pca.apply(corpus) - origin, pca.apply(queries) - origin, dim


@dataclass
class Probe:
    """A cached corpus in the PCA space an ingest fits: corpus and queries, the exact FP32 top 10
    of each query (row numbers), and the IVF lists a Milvus tier over it gets."""

    facts: dict
    x: np.ndarray
    q: np.ndarray
    truth: np.ndarray
    dim: int
    nlist: int

    def header(self) -> dict:
        """What every result file of these probes records about its data."""
        return {"machine": machine(git=True), "corpus": self.facts, "passages": len(self.x),
                "queries": len(self.q), "pca_dim": self.dim, "nlist": self.nlist}


def probe(passages: int, queries: int, variant: str, corpus: str = "docstrings") -> Probe:
    """``passages`` cached embeddings of ``corpus``, ``queries`` of them held out, in PCA space.
    FAISS runs one thread: OpenMP k-means on 2 shared cores spun for minutes."""
    faiss.omp_set_num_threads(1)
    _, _, vectors, facts = embedded_corpus(passages, variant, 2, corpus)
    rows, held = split(len(vectors), queries)
    base, held_out = vectors[rows], vectors[held]
    truth = exact_top_k(base, held_out, np.arange(len(base)))
    x, q, dim = pca_space(base, held_out)
    return Probe(facts, x, q, truth, dim, max(16, int(4 * np.sqrt(len(x)))))


def refine_tiers(dim: int, pq: list[int]) -> dict[str, tuple[str, float]]:
    """name -> (FAISS factory string of the refine index, code bytes a vector)."""
    tiers = {"FP16 (today)": ("SQfp16", 2.0 * dim), "SQ8": ("SQ8", 1.0 * dim),
             "SQ6": ("SQ6", 0.75 * dim), "SQ4": ("SQ4", 0.5 * dim)}
    for m in pq:  # slow to train on one thread: PQ160 took minutes on 3,700 vectors
        if dim % m == 0:
            tiers[f"PQ{m}x8"] = (f"PQ{m}", float(m))
    return tiers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=4200)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--factors", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--pq", type=int, nargs="*", default=[],
                        help="residual-free PQ refine tiers of these code bytes (slow to train)")
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args()
    space = probe(args.passages, args.queries, args.variant)
    x, q, truth, dim, nlist = space.x, space.q, space.truth, space.dim, space.nlist
    base = faiss.index_factory(dim, f"IVF{nlist},PQ{dim // 8}x8", faiss.METRIC_INNER_PRODUCT)
    base.train(x)  # the Milvus tier, trained once; each refine tier gets an empty copy
    results = []
    for name, (factory, code_bytes) in refine_tiers(dim, args.pq).items():
        refine = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        refine.train(x)
        index = faiss.IndexRefine(faiss.clone_index(base), refine)
        index.add(x)
        for factor in args.factors:
            params = faiss.IndexRefineSearchParameters(
                k_factor=factor, base_index_params=faiss.SearchParametersIVF(nprobe=nlist))
            found = index.search(q, K, params=params)[1]
            recall = float(np.mean([len(set(f) & set(t)) / K for f, t in
                                    zip(found, truth, strict=True)]))
            results.append({"tier": name, "code_bytes": code_bytes, "factor": factor,
                            "recall@10": round(recall, 4)})
            print(f"{name:14s} {code_bytes:6.0f} B  ×{factor:<3d} recall@10 {recall:.4f}")
    write_results(RESULTS / f"refine_codes_{args.label}.json",
                  {"what": __doc__.split("\n\n")[0], **space.header(),
                   "ann": f"IVF{nlist},PQ{dim // 8}x8 (all lists)", "rows": results})


if __name__ == "__main__":
    main()
