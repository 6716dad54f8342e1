"""How wide must the vectors Milvus holds be, when SQ8 codes of the whole PCA vector rescore?

Issue 26 item 4: Milvus keeps its own copy of every vector (field data, FP32) beside its index,
so its width is paid twice in Milvus and once more in RAM on Milvus Lite. Rescoring reads the
archive's SQ8 codes of the whole PCA vector (``codec.refine``), so the ANN tier only has to put
the true top 10 among ``k × factor`` candidates. This measures that trade-off before any code
changes: in the PCA space an ingest fits (99% of the variance), the Milvus tier indexes only the
first ``w`` PCA components (the highest-variance ones): IVF_SQ8 as Milvus Lite builds it,
IVF-PQ32 as a server does; FAISS ``IndexRefine`` re-ranks with SQ8 codes of all components.
Recall@10 is against exact FP32 inner-product search over the full embeddings; held-out passages
are the queries; every IVF list is probed (what the index plan does below 50,000 rows).
Writes benchmarks/results/ann_width_<label>.json.

    .venv/bin/python benchmarks/ann_width.py [--passages 10500] [--corpus fortunes] [--variant fp32]
"""

from __future__ import annotations

import argparse

import faiss
import numpy as np
from embedded import K
from harness import RESULTS, write_results
from refine_codes import probe

from vecpress.tasks.recall import recall_at_k


def truncated_index(dim: int, width: int, factory: str) -> faiss.Index:
    """``factory`` over the first ``width`` components (a selection matrix as its transform)."""
    select = faiss.LinearTransform(dim, width, False)
    matrix = np.zeros((width, dim), np.float32)
    matrix[np.arange(width), np.arange(width)] = 1.0
    faiss.copy_array_to_vector(matrix.ravel(), select.A)
    select.is_trained = True
    inner = faiss.index_factory(width, factory, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexPreTransform(select, inner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=10500)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--corpus", default="fortunes")
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 96, 128, 160, 192, 256])
    parser.add_argument("--factors", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args()
    space = probe(args.passages, args.queries, args.variant, args.corpus)
    x, q, truth, dim, nlist = space.x, space.q, space.truth, space.dim, space.nlist
    refine = faiss.index_factory(dim, "SQ8", faiss.METRIC_INNER_PRODUCT)
    refine.train(x)
    results = []
    for width in sorted({w for w in args.widths if w < dim} | {dim}):
        for tier, factory, index_bytes in (("Lite IVF_SQ8", f"IVF{nlist},SQ8", width),
                                           ("server IVF_PQ32", f"IVF{nlist},PQ32x8", 32)):
            if width % 32 and "PQ" in factory:
                continue
            base = truncated_index(dim, width, factory)
            base.train(x)
            index = faiss.IndexRefine(base, faiss.clone_index(refine))
            index.add(x)
            for factor in args.factors:
                params = faiss.IndexRefineSearchParameters(k_factor=factor)
                faiss.extract_index_ivf(base).nprobe = nlist
                recall = recall_at_k(truth, index.search(q, K, params=params)[1].tolist(), K)
                ann_recall = recall_at_k(truth, base.search(q, K)[1].tolist(), K)
                results.append({"tier": tier, "width": width, "factor": factor,
                                "milvus_field_bytes_fp32": 4 * width,
                                "index_code_bytes": index_bytes,
                                "recall@10 ANN only": round(ann_recall, 4),
                                "recall@10 rescored (SQ8, full PCA)": round(recall, 4)})
                print(f"{tier:16s} w={width:3d} ×{factor:<3d} field {4 * width:5d} B index "
                      f"{index_bytes:4d} B  ANN {ann_recall:.4f}  rescored {recall:.4f}",
                      flush=True)
    write_results(RESULTS / f"ann_width_{args.corpus}_{args.label}.json",
                  {"what": __doc__.split("\n\n")[0], **space.header(),
                   "refine": f"SQ8 of all {dim} PCA components", "rows": results})


if __name__ == "__main__":
    main()
