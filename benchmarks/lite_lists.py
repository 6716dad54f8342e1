"""Milvus Lite's IVF lists: it builds 128 whatever nlist says, so a plan's nprobe must count those.

Real Milvus Lite, the packaged MiniLM's embeddings of docstring paragraphs (``embedded.py``'s
cache), the codec the product fits (defaults), IVF_SQ8 as an ingest indexes it; k × 8
candidates rescored with the fp16 PCA vectors, as the searcher does. For each collection size,
recall@10 against exact FP32 search of two plans of the same index:

- ``planned on nlist``: nprobe from the nlist the plan asked for (before: min(4√n, n/39) lists,
  all probed below 50k rows), which Lite ignores;
- ``planned on Lite's 128``: nprobe from the 128 lists Lite builds (``LITE_IVF_NLIST``).

    cd benchmarks && ../.venv/bin/python lite_lists.py [--sizes 1000 2000 4000] [--queries 200]

Writes benchmarks/results/lite_lists.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from embedded import K, embedded_corpus, exact_top_k
from harness import RESULTS, machine, write_results


def main() -> None:
    from vecpress.infra.index_plan import default_nlist, derived_nprobe, plan_index
    from vecpress.infra.milvus import MilvusStore
    from vecpress.infra.settings import CodecSettings, MilvusSettings
    from vecpress.tasks.codec.choose import fit_new_codec
    from vecpress.tasks.search.filters import exact_rank

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    total = max(args.sizes) + args.queries
    _, _, vectors, facts = embedded_corpus(total, "int8", threads=2)
    queries = vectors[-args.queries:]
    rows = []
    for size in args.sizes:
        base = vectors[:size]
        pks = np.arange(size, dtype=np.int64)
        truth = exact_top_k(base, queries, pks)
        codec, _ = fit_new_codec(base, CodecSettings(min_fit_vectors=min(1000, size)),
                                 MilvusSettings())
        projected = codec.project(base)
        fp16 = projected.astype(np.float16).astype(np.float32)
        xq = codec.project_queries(queries)
        with tempfile.TemporaryDirectory() as folder:
            store = MilvusStore(MilvusSettings(uri=f"{folder}/lists.db"))
            store.ensure_collection("c", codec.dim, codec.codec_id)
            store.upsert("c", [{"pk": int(p), "doc_id": str(p), "chunk": 0, "text": "",
                                "source": "", "codec_id": codec.codec_id, "vector": v}
                               for p, v in zip(pks, projected, strict=True)])
            plan = plan_index(store.settings, size, codec.report["pq_m"], 8)
            store.ensure_index("c", plan)
            old_nlist = default_nlist(size)
            for label, nprobe in (("planned on nlist", derived_nprobe(size, old_nlist)),
                                  ("planned on Lite's 128", plan.nprobe)):
                started = time.perf_counter()
                found = store.search("c", xq, K * plan.rescore_factor, nprobe)
                ms = 1e3 * (time.perf_counter() - started) / len(xq)
                ranked = [[pk for pk, _ in exact_rank(q, np.array([p for p, _ in hits]),
                                                      fp16[[p for p, _ in hits]], K)]
                          for q, hits in zip(xq, found, strict=True)]
                hit = np.mean([len(set(r) & set(t.tolist())) / K
                               for r, t in zip(ranked, truth, strict=True)])
                rows.append({"passages": size, "plan": label, "nlist_planned": old_nlist
                             if label == "planned on nlist" else plan.nlist, "nprobe": nprobe,
                             "recall@10_rescored": round(float(hit), 3),
                             "ms_per_query_batch": round(ms, 2)})
                print(f"{size:>6} {label:<24} nprobe {nprobe:>4}  recall@10 {hit:.3f}  "
                      f"{ms:.2f} ms/query", flush=True)
            store.close()
    write_results(RESULTS / "lite_lists.json", {
        "machine": machine("pymilvus", git=True), "embeddings": facts, "queries": args.queries,
        "index": "IVF_SQ8 on Milvus Lite (128 lists whatever nlist says), candidates "
                 "k x 8 rescored with fp16 PCA vectors; truth: exact FP32 inner product",
        "rows": rows})


if __name__ == "__main__":
    main()
