"""Where recall goes in the compressed search: PCA ceiling vs IVF probing vs rescoring.

Run after an ingest (default: the demo collection, `make demo`). Ground truth is exact FP32 search
over the collection's passages, re-embedded here; queries are the demo's held-out paragraphs.
Prints a table and writes benchmarks/results/search_recall_<collection>.json.

    .venv/bin/python benchmarks/search_recall.py [--collection demo] [--queries data/demo/queries.jsonl]
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import os

import faiss
import pyarrow as pa
import pyarrow.parquet as pq
from embedded import K, exact_top_k
from harness import RESULTS, Stopwatch, machine, write_results
from rich.console import Console
from rich.table import Table

from vecpress.infra.settings import Settings
from vecpress.tasks.inputs.sources import read_texts
from vecpress.tasks.recall import recall_at_k
from vecpress.tasks.search.opening import open_searcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="demo")
    parser.add_argument("--queries", default="data/demo/queries.jsonl")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, 32, 64, 128])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    settings = Settings(collection=args.collection)
    searcher = open_searcher(settings)
    runs = sorted(glob.glob(f"{settings.storage_root}/collections/{args.collection}/runs/*"))
    table = pa.concat_tables([pq.read_table(f) for f in sorted(glob.glob(f"{runs[-1]}/passages/*"))])
    pks = table.column("pk").to_numpy()
    texts = read_texts(args.queries, settings.inputs)
    queries = searcher.embedder.encode_queries(texts)
    corpus = searcher.embedder.encode_documents(table.column("text").to_pylist())

    truth = exact_top_k(corpus, queries, pks)
    pca = faiss.IndexFlatL2(searcher.codec.dim)
    pca.add(searcher.codec.project(corpus))
    ceiling = recall_at_k(truth, pks[pca.search(searcher.codec.project(queries), K)[1]].tolist(), K)

    rows = []
    for nprobe in args.nprobe:
        searcher.snapshot = dataclasses.replace(searcher.snapshot, nprobe=nprobe)
        for rescore in (False, True):
            clock = Stopwatch()
            found = searcher.search_embeddings(queries, K, rescore=rescore)
            seconds = clock.seconds
            rows.append({"nprobe": nprobe, "rescore": rescore,
                         "recall@10": recall_at_k(truth, [[h.pk for h in r] for r in found], K),
                         "seconds_for_all_queries": seconds})
    searcher.store.close()

    out = Table(title=f"recall@{K} vs exact FP32, {len(texts)} held-out queries, "
                      f"{len(pks):,} passages, PCA-{searcher.codec.dim} ceiling {ceiling:.3f}")
    for col in ("nprobe", "rescore", "recall@10"):
        out.add_column(col, justify="right")
    for row in rows:
        out.add_row(str(row["nprobe"]), "yes" if row["rescore"] else "no", f"{row['recall@10']:.3f}")
    Console().print(out)
    result = {"collection": args.collection, "queries": len(texts), "passages": len(pks),
              "index": settings.milvus.uri, "codec": searcher.codec.report,
              "pca_exact_l2_ceiling": ceiling, "rows": rows,
              "machine": machine()}
    write_results(RESULTS / f"search_recall_{args.collection}.json", result)


if __name__ == "__main__":
    main()
