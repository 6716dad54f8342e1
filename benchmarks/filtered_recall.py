"""Filtered search: recall@10 against exact FP32 search within the filtered set, by selectivity.

Docstring paragraphs (``corpora.docstrings``) with metadata of four selectivities (50%, 10%, 1%,
0.2%) are ingested into a new Milvus Lite collection with the packaged model; 200 held-out
paragraphs are the queries. Each filter is searched two ways in the same run: exactly over its
matches (the default below ``search.filter_exact_rows``) and through the index with probes widened
by 1 / selectivity (``filter_exact_rows`` 0), and, as the baseline, through the index with the
build's own probes (what a plain Milvus filter does). Ground truth: the FP32 embeddings of the
matching passages, searched exactly. Writes benchmarks/results/filtered_recall.json.

    .venv/bin/python benchmarks/filtered_recall.py [--docs 5000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from corpora import docstrings, write_jsonl
from harness import RESULTS, Stopwatch, machine, write_results
from rich.console import Console
from rich.table import Table

FILTERS = {"half == true": lambda n: n % 2 == 0, 'team == "t7"': lambda n: n % 10 == 7,
           "rare == true": lambda n: n % 100 == 0, "tiny == true": lambda n: n % 500 == 0}


def _metadata(n: int) -> dict:
    return {"half": n % 2 == 0, "team": f"t{n % 10}", "rare": n % 100 == 0, "tiny": n % 500 == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nprobe", type=int, default=16,
                        help="IVF lists a search probes before widening (a large collection's "
                        "auto-tuned nprobe probes a small share of its lists; a 5,000-passage "
                        "one probes all of them, where every path is exhaustive)")
    parser.add_argument("--root", help="A folder an earlier run of this script ingested into: "
                        "search it again without ingesting")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["VECPRESS_SERVER_AUTO_START"] = "false"

    import vecpress
    from vecpress.infra.settings import Settings

    paragraphs = docstrings(args.docs + args.queries)
    corpus, held_out = paragraphs[: args.docs], paragraphs[args.docs :]
    root = Path(args.root or tempfile.mkdtemp(prefix="vecpress-filtered-"))
    # Its own Lite file: the default ./data/milvus.db would be shared with earlier runs' roots.
    settings = Settings(collection="filtered", storage_root=str(root / "data"),
                        milvus={"uri": str(root / "data" / "milvus.db")})
    clock = Stopwatch()
    if not args.root:
        source = write_jsonl(root / "corpus.jsonl", ({"id": doc_id, "text": text, **_metadata(n)}
                                                     for n, (doc_id, text) in enumerate(corpus)))
        vecpress.ingest([str(source)], settings)
    ingest_s = clock.seconds

    shards = root / "data" / "collections" / "filtered" / "shards"
    passages = pa.concat_tables([pq.read_table(p, columns=["pk", "text", "metadata"])
                                 for p in sorted(shards.glob("*/part-*.parquet"))])
    metadata = [json.loads(m) for m in passages.column("metadata").to_pylist()]
    pks = passages.column("pk").to_numpy()
    rows = []
    kb = vecpress.open_collection("filtered", root / "data", settings=settings)
    try:
        build_nprobe = kb._searcher.snapshot.nprobe
        index = kb._searcher.store.index_info(kb._searcher.collection)
        kb._searcher.snapshot = dataclasses.replace(kb._searcher.snapshot, nprobe=args.nprobe)
        embedder = kb._searcher.embedder
        queries = embedder.encode_queries([t for _, t in held_out])
        everything = embedder.encode_documents(passages.column("text").to_pylist())  # truth
        for text in FILTERS:
            key, value = text.split(" == ")
            keep = np.array([m.get(key) == json.loads(value) for m in metadata])
            order = np.argsort(-(queries @ everything[keep].T), axis=1)[:, :10]
            truth = [set(pks[keep][o].tolist()) for o in order]
            for path, exact_rows, widen in (("exact over the matches", 16_384, True),
                                            ("index, probes widened", 0, True),
                                            ("index, build's probes (baseline)", 0, False)):
                kb._searcher.filter_exact_rows = exact_rows
                if not widen:  # a plain Milvus filter: the build's nprobe, whatever it keeps
                    from vecpress.tasks.search import filters
                    widened = filters.widened_nprobe
                    filters.widened_nprobe = lambda nprobe, matches, rows: nprobe  # type: ignore
                clock = Stopwatch()
                found = kb.search_embeddings(queries, 10, filter=text)
                seconds = clock.seconds
                if not widen:
                    filters.widened_nprobe = widened
                recall = float(np.mean([len({h.pk for h in hits} & t) / len(t)
                                        for hits, t in zip(found, truth, strict=True)]))
                assert all(h.metadata.get(key) == json.loads(value) for f in found for h in f)
                rows.append({"filter": text, "selectivity": round(float(keep.mean()), 4),
                             "matches": int(keep.sum()), "path": path, "recall@10": round(recall, 4),
                             "ms_per_query": round(1000 * seconds / len(queries), 2)})
    finally:
        kb.close()

    out = Table(title=f"filtered recall@10 vs exact FP32 within the filter: {len(pks):,} passages, "
                      f"{len(held_out)} queries, nprobe {args.nprobe} (the build's: "
                      f"{build_nprobe})")
    for col in ("filter", "selectivity", "matches", "path", "recall@10", "ms/query"):
        out.add_column(col, justify="left" if col in ("filter", "path") else "right")
    for row in rows:
        out.add_row(row["filter"], f"{row['selectivity']:.1%}", str(row["matches"]), row["path"],
                    f"{row['recall@10']:.3f}", f"{row['ms_per_query']:.1f}")
    Console().print(out)
    write_results(RESULTS / "filtered_recall.json", {
        "what": __doc__.splitlines()[0], "passages": len(pks), "queries": len(held_out),
        "ingest_s": round(ingest_s, 1), "index": index,
        "build_nprobe": build_nprobe, "searched_nprobe": args.nprobe,
        "rows": rows, "machine": machine()})


if __name__ == "__main__":
    main()
