"""Why the defaults are what they are: recall@10 of PCA dimension, IVF probing and rescoring on
real corpora of different kinds, simulated with FAISS (what Milvus Lite's IVF_SQ8 and a server's
IVF_PQ do), against exact FP32 inner-product search.

Per corpus: the PCA dimension that keeps 90–99% of the variance; exact search in PCA-d fp16 space
(the ceiling of rescoring); IVF_SQ8 at the plan's nlist probing shares of the lists; IVF-PQ (M 16
and 32, PCA-320 rotated) at shares × rescoring factors. Embeddings come from
benchmarks/compression.py's cache (data/bench/<corpus>-<variant>-<n>.npy; made with
`compression.py --embed-only --corpus C --passages N --variant V`).

    .venv/bin/python benchmarks/index_plan.py [--inputs fortunes-fp32-12000 docstrings-int8-50500]

Writes benchmarks/results/index_plan.json.
"""

from __future__ import annotations

import argparse
import json
import math

import faiss
import numpy as np
from embedded import K
from harness import BENCH_DIR, RESULTS, machine, write_results

SHARES = (0.05, 0.1, 0.25, 0.5, 1.0)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def rescored(index: faiss.Index, xq: np.ndarray, fp16: np.ndarray, factor: int) -> np.ndarray:
    candidates = index.search(xq, K * factor)[1]
    out = []
    for q, ids in zip(xq, candidates, strict=True):
        ids = ids[ids >= 0]
        out.append(ids[np.argsort(((fp16[ids] - q) ** 2).sum(1), kind="stable")[:K]])
    return np.array([np.pad(o, (0, K - len(o)), constant_values=-1) for o in out])


def measure(x: np.ndarray, queries: int) -> dict:
    from vecpress.infra.index_plan import default_nlist

    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    order = np.random.default_rng(7).permutation(len(x))
    q, b = x[order[:queries]], x[order[queries:]]
    exact = faiss.IndexFlatIP(b.shape[1])
    exact.add(b)
    truth = exact.search(q, K)[1]
    train = b[:20_000]
    full = faiss.PCAMatrix(b.shape[1], b.shape[1])
    full.train(train)
    eig = faiss.vector_to_array(full.eigenvalues)
    share = np.cumsum(eig) / eig.sum()
    out: dict = {"base": len(b), "queries": len(q), "dims_for_variance": {
        str(v): int(np.searchsorted(share, v) + 1) for v in (0.9, 0.95, 0.97, 0.98, 0.99)}}
    nlist = default_nlist(len(b))
    out["nlist"] = nlist
    out["pca"] = {}
    for dim in (128, 192, 256, 320, b.shape[1]):
        pca = faiss.PCAMatrix(b.shape[1], dim, 0.0, True)
        pca.train(train)
        xb, xq = pca.apply(b), pca.apply(q)
        fp16 = xb.astype(np.float16).astype(np.float32)
        flat = faiss.IndexFlatL2(dim)
        flat.add(fp16)
        row = {"explained_variance": float(share[dim - 1]),
               "exact_in_pca_fp16": recall(flat.search(xq, K)[1], truth), "ivf_sq8": {}}
        sq8 = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(dim), dim, nlist,
                                            faiss.ScalarQuantizer.QT_8bit)
        sq8.train(fp16)
        sq8.add(fp16)
        for s in SHARES:
            sq8.nprobe = max(1, math.ceil(s * nlist))
            row["ivf_sq8"][str(s)] = recall(rescored(sq8, xq, fp16, 8), truth)
        if dim == 320:
            row["ivf_pq"] = {}
            for m in (16, 32):
                pq = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, nlist, m, 8)
                pq.cp.min_points_per_centroid = pq.pq.cp.min_points_per_centroid = 1
                pq.train(xb)
                pq.add(xb)
                for s in (0.1, 0.25, 0.5, 1.0):
                    pq.nprobe = max(1, math.ceil(s * nlist))
                    for factor in (8, 16, 32, 64):
                        row["ivf_pq"][f"M{m} share {s} x{factor}"] = recall(
                            rescored(pq, xq, fp16, factor), truth)
        out["pca"][str(dim)] = row
        print(json.dumps({"dim": dim} | row), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", nargs="+", default=["fortunes-fp32-12000",
                                                        "descriptions-fp32-5000",
                                                        "docstrings-int8-50500"])
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    result: dict = {"machine": machine("faiss"),
                    "truth": f"exact inner-product top-{K} over the embeddings", "corpora": {}}
    for name in args.inputs:
        print(f"== {name}", flush=True)
        result["corpora"][name] = measure(np.load(BENCH_DIR / f"{name}.npy"), args.queries)
    write_results(RESULTS / "index_plan.json", result)


if __name__ == "__main__":
    main()
