"""IVF lists planned on the collection's rows or on a segment's: what a Milvus server's per-segment
IVF_PQ index costs to train and what it recalls, simulated with FAISS (what Milvus builds).

A Milvus server trains one IVF index per sealed segment, with the collection's one ``nlist``,
which ``infra.index_plan`` derives from the whole collection's rows (300k rows: ~2,200 lists), so
a ~50k-row segment (a bulk-import file, or 65,536 flushed upserts: ``loads.FLUSH_ROWS``) trains
~2,200 centroids on ~22 points each, below FAISS's 39. Planning on ``min(rows, FLUSH_ROWS)``
instead was tried in stop 49: here one segment of real MiniLM int8 embeddings (docstrings, the
cache of benchmarks/compression.py) is indexed both ways, PCA-reduced as the codec does, with
each plan's nprobe (the same share of the lists, by ``derived_nprobe``) for a collection of
``--rows``; recall@10 of the ANN and of rescoring (``RESCORE_FACTOR`` candidates a result,
exact vectors) against exact search, and the FAISS train + add seconds on one thread.

    .venv/bin/python benchmarks/segment_nlist.py [--input docstrings-int8-50500] [--rows 300000]

Writes benchmarks/results/server_segment_nlist.json.
"""

from __future__ import annotations

import argparse
import time

import faiss
import numpy as np
from embedded import K
from harness import BENCH_DIR, RESULTS, machine, write_results
from index_plan import recall, rescored

from vecpress.infra.index_plan import RESCORE_FACTOR, default_nlist, derived_nprobe
from vecpress.tasks.ingest.loads import FLUSH_ROWS

QUERIES = 500
PCA_DIM, PQ_M = 320, 32  # the codec's default shape for MiniLM (384-d): docs/compression.md


def one_plan(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, nlist: int,
             nprobe: int) -> dict:
    faiss.omp_set_num_threads(1)
    index = faiss.IndexIVFPQ(faiss.IndexFlatL2(base.shape[1]), base.shape[1], nlist, PQ_M, 8)
    started = time.perf_counter()
    index.train(base)
    index.add(base)
    build_s = time.perf_counter() - started
    index.nprobe = nprobe
    ann = index.search(queries, K)[1]
    found = rescored(index, queries, base, RESCORE_FACTOR["IVF_PQ"])
    return {"nlist": nlist, "nprobe": nprobe, "points_per_list": round(len(base) / nlist, 1),
            "probed_share": round(nprobe / nlist, 3), "train_add_s_one_thread": round(build_s, 2),
            "recall_at_10_ann": round(recall(ann, truth), 3),
            "recall_at_10_rescored": round(recall(found, truth), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default="docstrings-int8-50500")
    parser.add_argument("--rows", type=int, default=300_000, help="the collection's rows, which "
                        "the old plan derived nlist from")
    args = parser.parse_args()
    vectors = np.load(BENCH_DIR / f"{args.input}.npy").astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(vectors))
    queries, base = vectors[order[:QUERIES]], vectors[order[QUERIES:]]
    pca = faiss.PCAMatrix(base.shape[1], PCA_DIM)
    pca.train(base)
    base, queries = pca.apply(base), pca.apply(queries)
    exact = faiss.IndexFlatL2(PCA_DIM)
    exact.add(base)
    truth = exact.search(queries, K)[1]
    plans = {}
    for label, planned_rows in (("collection rows (the plan)", args.rows),
                                ("segment rows (tried)", min(args.rows, FLUSH_ROWS))):
        nlist = min(default_nlist(planned_rows), len(base))
        plans[label] = one_plan(base, queries, truth, nlist, derived_nprobe(args.rows, nlist))
        print(label, plans[label], flush=True)
    write_results(RESULTS / "server_segment_nlist.json", {
        "what": __doc__.split("\n\n")[0], "machine": machine("faiss", git=True),
        "input": args.input, "segment_rows": len(base), "collection_rows": args.rows,
        "queries": QUERIES, "pca_dim": PCA_DIM, "pq_m": PQ_M, "plans": plans})


if __name__ == "__main__":
    main()
