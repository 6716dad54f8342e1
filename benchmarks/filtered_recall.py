"""Filtered search: recall@10 against exact FP32 search within the filtered set, by selectivity.

Docstring paragraphs (``corpora.docstrings``) with metadata of four selectivities (50%, 10%, 1%,
0.2%) are ingested into a new Milvus Lite collection with the packaged model; 200 held-out
paragraphs are the queries. Each filter is searched several ways in the same run: the default
plan; exactly over its matches (the default below ``search.filter_exact_rows``); through the index
with probes widened by 1 / selectivity (``filter_exact_rows`` 0); after an unfiltered search of
1.5 / selectivity times the candidates (``search.post_filter_share``, the default for filters over
filter_exact_rows keeping ≥ 10%); and, as the baseline, through the index with the build's own
probes (what a plain Milvus filter does). Ground truth: the FP32 embeddings of the
matching passages, searched exactly. Writes benchmarks/results/filtered_recall.json.

    .venv/bin/python benchmarks/filtered_recall.py [--docs 5000]
    .venv/bin/python benchmarks/filtered_recall.py --docs 50000 --milvus lite server --variant int8

``--milvus server`` starts the Milvus 2.3.5 standalone (the ``milvus`` dev dependency); both
backends search the same passages against the same exact ground truth, embedded once with
``--truth-variant`` (fp32: "exact FP32 search", whatever ``--variant`` the collection uses; the
variant's own embeddings of a passage vary with its batch under dynamic int8 quantisation).
``--typed`` uses collections whose filter keys are typed fields (``--typed-fields``): on Lite,
``filtered_typed``, made by ingesting, or by ``vecpress reindex --from-archive
<root>/data/collections/filtered --collection filtered_typed --typed-fields
half:bool,team:varchar,rare:bool,tiny:bool`` (it reads that collection's shards).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from corpora import docstrings, write_jsonl
from harness import RESULTS, Stopwatch, machine, milvus_server, server_uri, write_results
from rich.console import Console
from rich.table import Table

TYPED = {"half": "bool", "rare": "bool", "team": "varchar", "tiny": "bool"}
FILTERS = {"half == true": lambda n: n % 2 == 0, 'team == "t7"': lambda n: n % 10 == 7,
           "rare == true": lambda n: n % 100 == 0, "tiny == true": lambda n: n % 500 == 0}


def _metadata(n: int) -> dict:
    return {"half": n % 2 == 0, "team": f"t{n % 10}", "rare": n % 100 == 0, "tiny": n % 500 == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--latency-queries", type=int, default=50,
                        help="queries also searched one at a time, for p50 / p95 latency")
    parser.add_argument("--nprobe", type=int, default=16,
                        help="IVF lists a search probes before widening (a large collection's "
                        "auto-tuned nprobe probes a small share of its lists; a 5,000-passage "
                        "one probes all of them, where every path is exhaustive); 0: the "
                        "build's own plan, as a search with default settings")
    parser.add_argument("--milvus", nargs="+", choices=["lite", "server"], default=["lite"])
    parser.add_argument("--variant", default="fp32", help="the packaged model's variant")
    parser.add_argument("--root", help="A folder an earlier run of this script ingested into: "
                        "search it again without ingesting")
    parser.add_argument("--typed", action="store_true", help="filter keys as typed fields")
    parser.add_argument("--truth-variant", default="fp32", help="the model variant of the exact "
                        "ground truth (passages and queries)")
    parser.add_argument("--keep-server", action="store_true", help="with --root: search the "
                        "server collection an earlier run left in its milvus-server folder")
    parser.add_argument("--label", default="", help="suffix of the results file's name")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["VECPRESS_SERVER_AUTO_START"] = "false"

    paragraphs = docstrings(args.docs + args.queries)
    corpus, held_out = paragraphs[: args.docs], paragraphs[args.docs :]
    root = Path(args.root or tempfile.mkdtemp(prefix="vecpress-filtered-"))
    source = root / "corpus.jsonl"
    if not source.exists():
        write_jsonl(source, ({"id": doc_id, "text": text, **_metadata(n)}
                             for n, (doc_id, text) in enumerate(corpus)))
    name = "filtered_recall.json" if (args.docs, args.milvus) == (5000, ["lite"]) else \
        f"filtered_recall_{args.docs}_{args.variant}{'_typed' if args.typed else ''}{args.label}.json"
    for backend in args.milvus:  # written after each backend, merged with earlier runs' others
        with ExitStack() as stack:
            uri = str(root / "data" / "milvus.db")
            if backend == "server":
                server = stack.enter_context(milvus_server(root / "milvus-server"))
                uri = server_uri(server)
            result = _measure(args, root, source, uri, held_out)
        _print(result, backend, args)
        write_results(RESULTS / name, {
            "what": __doc__.splitlines()[0], "queries": len(held_out), "variant": args.variant,
            "searched_nprobe": args.nprobe, "latency_queries": args.latency_queries,
            "backends": {backend: result}, "machine": machine()}, merge="backends")


def _measure(args: argparse.Namespace, root: Path, source: Path, uri: str,
             held_out: list[tuple[str, str]]) -> dict:
    """Ingest ``source`` into a collection on ``uri`` (unless done), then every filter by every
    path: recall@10 within the filter (batch of all queries) and single-query latency."""
    import vecpress
    from vecpress.infra.settings import Settings
    from vecpress.tasks.search import filters

    collection = ("filtered_server" if uri.startswith("http") else "filtered") + \
        ("_typed" if args.typed else "")
    settings = Settings(collection=collection, storage_root=str(root / "data"),
                        milvus={"uri": uri}, model={"variant": args.variant},
                        metadata={"fields": TYPED if args.typed else {}})
    clock = Stopwatch()
    fresh_server = uri.startswith("http") and not args.keep_server
    if not (root / "data" / "collections" / collection).exists() or fresh_server:
        vecpress.ingest([str(source)], settings, recreate=fresh_server)
    ingest_s = clock.seconds
    shards = root / "data" / "collections" / collection / "shards"
    if not shards.exists():  # a reindex of the untyped collection: its shards
        shards = root / "data" / "collections" / collection.removesuffix("_typed") / "shards"
    passages = pa.concat_tables([pq.read_table(p, columns=["pk", "text", "metadata"])
                                 for p in sorted(shards.glob("*/part-*.parquet"))])
    metadata = [json.loads(m) for m in passages.column("metadata").to_pylist()]
    pks = passages.column("pk").to_numpy()
    rows = []
    kb = vecpress.open_collection(collection, root / "data", settings=settings)
    try:
        build_nprobe = kb._searcher.snapshot.nprobe
        kb_pca_dim = kb._searcher.snapshot.codec.report.get("pca_dim")
        index = _indexed(kb._searcher.store, kb._searcher.collection)
        default_share = kb._searcher.post_filter_share  # the backend's default
        if args.nprobe:
            kb._searcher.snapshot = dataclasses.replace(kb._searcher.snapshot, nprobe=args.nprobe)
        embedder = kb._searcher.embedder
        queries = embedder.encode_queries([t for _, t in held_out])
        # Ground truth: the same passages and model on every backend, kept in the root.
        truth_embedder = _truth_embedder(args, root, embedder)
        truth_queries = truth_embedder.encode_queries([t for _, t in held_out])
        cached = root / f"truth-{args.truth_variant}-{len(pks)}.npz"
        texts = passages.column("text").to_pylist()
        if not cached.exists():
            np.savez(cached, pks=pks, texts=np.array(texts, dtype=object),
                     vectors=truth_embedder.encode_documents(texts))
        saved = np.load(cached, allow_pickle=True)
        # By text: shards list passages in any order, and a passage's key hashes its file's URL.
        row_of = {str(text): i for i, text in enumerate(saved["texts"])}
        everything = saved["vectors"][[row_of[text] for text in texts]]
        for text in FILTERS:
            key, value = text.split(" == ")
            keep = np.array([m.get(key) == json.loads(value) for m in metadata])
            order = np.argsort(-(truth_queries @ everything[keep].T), axis=1)[:, :10]
            truth = [set(pks[keep][o].tolist()) for o in order]
            for path, exact_rows, widen, post in (
                    ("default plan", 16_384, True, 2.0),
                    ("exact over the matches", 16_384, True, 1.01),
                    ("index, probes widened", 0, True, 1.01),
                    ("post-filter", 0, True, 1e-9),
                    ("index, build's probes (baseline)", 0, False, 1.01)):
                if post < 1 and keep.mean() < 0.05:
                    continue  # no plan post-filters so narrow a filter (1%: 4 s a query on Lite)
                kb._searcher.filter_exact_rows = exact_rows
                kb._searcher.post_filter_share = default_share if path == "default plan" else post
                widened = filters.widened_nprobe
                if not widen:  # a plain Milvus filter: the build's nprobe, whatever it keeps
                    filters.widened_nprobe = lambda nprobe, matches, rows: nprobe  # type: ignore
                try:
                    clock = Stopwatch()
                    found = kb.search_embeddings(queries, 10, filter=text)
                    seconds = clock.seconds
                    single = []
                    for query in queries[: args.latency_queries]:
                        clock = Stopwatch()
                        kb.search_embeddings(query[None, :], 10, filter=text)
                        single.append(1000 * clock.seconds)
                finally:
                    filters.widened_nprobe = widened
                recall = float(np.mean([len({h.pk for h in hits} & t) / len(t)
                                        for hits, t in zip(found, truth, strict=True)]))
                assert all(h.metadata.get(key) == json.loads(value) for f in found for h in f)
                rows.append({"filter": text, "selectivity": round(float(keep.mean()), 4),
                             "matches": int(keep.sum()), "path": path, "recall@10": round(recall, 4),
                             "ms_per_query_batched": round(1000 * seconds / len(queries), 2),
                             "single_p50_ms": round(float(np.percentile(single, 50)), 1),
                             "single_p95_ms": round(float(np.percentile(single, 95)), 1)})
    finally:
        kb.close()
    return {"passages": len(pks), "ingest_s": round(ingest_s, 1), "index": index,
            "truth_variant": args.truth_variant, "codec_pca_dim": kb_pca_dim,
            "build_nprobe": build_nprobe, "typed_fields": TYPED if args.typed else {},
            "rows": rows}


def _indexed(store, collection: str, timeout_s: float = 900.0) -> dict:  # type: ignore[no-untyped-def]
    """The index's description once no row waits to be indexed (a server indexes sealed
    segments in the background after an ingest returns): searched before, the index paths
    would measure a brute-force scan."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        index = store.index_info(collection)
        if int(index.get("pending_index_rows", 0) or 0) == 0 or time.monotonic() > deadline:
            return index
        time.sleep(5)


def _truth_embedder(args: argparse.Namespace, root: Path, searched):  # type: ignore[no-untyped-def]
    """The packaged model in ``--truth-variant`` (the collection's own embedder when the same)."""
    if args.truth_variant == args.variant:
        return searched
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.export import export_model
    from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir

    spec = read_model_spec(resolve_model_dir(None))
    paragraphs = docstrings(64)
    return OnnxEmbedder(export_model(spec, args.truth_variant, root / "truth-models",
                                     lambda: [t for _, t in paragraphs]))


def _print(result: dict, backend: str, args: argparse.Namespace) -> None:
    out = Table(title=f"filtered recall@10 vs exact FP32 within the filter, Milvus {backend}: "
                      f"{result['passages']:,} passages, {args.queries} queries, nprobe "
                      f"{args.nprobe} (the build's: {result['build_nprobe']})")
    for col in ("filter", "selectivity", "matches", "path", "recall@10", "ms/query batched",
                "p50 ms", "p95 ms"):
        out.add_column(col, justify="left" if col in ("filter", "path") else "right")
    for row in result["rows"]:
        out.add_row(row["filter"], f"{row['selectivity']:.1%}", str(row["matches"]), row["path"],
                    f"{row['recall@10']:.3f}", f"{row['ms_per_query_batched']:.1f}",
                    f"{row['single_p50_ms']:.1f}", f"{row['single_p95_ms']:.1f}")
    Console().print(out)


if __name__ == "__main__":
    main()
