"""Search latency, end to end (query text → ranked hits with texts) and the bare Milvus call.

Real passages (docstring paragraphs, as benchmarks/compression.py: embedded once with the
packaged MiniLM ONNX export and cached under data/bench/) are loaded with their texts into
Milvus Lite (default codec) and into a Milvus 2.3.5 server with the documented PQ16
configuration (PCA-256 rotated, IVF32, PQ16, nprobe 32, rescoring r = 64). Single queries
(nq = 1, k = 10) are timed through (the server restarted after the bulk load, so that its
background compaction does not share the 2 cores with the searches):

- ``vecpress``: ``Searcher.search`` as the API and CLI run it: Bounded consistency, the ANN call
  returns keys and distances only, the texts of the final k are fetched in one query;
- ``baseline``: the search before this change, rebuilt here: Strong consistency, text and source
  of all k × r candidates returned by the ANN call;
- ``bare Milvus``: the ANN call alone, both ways.

Recall@10 against exact FP32 search is measured on both paths (same candidates, so it must not
change), and a batch of 256 queries is searched in one call (the old path overflowed gRPC's
64 MiB message on the server).

    .venv/bin/python benchmarks/search_latency.py [--passages 50000] [--only lite|server]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil

import numpy as np
from embedded import K, embedded_corpus, exact_top_k, split, training_sample
from harness import (
    BENCH_DIR,
    MODEL_CACHE,
    RESULTS,
    Stopwatch,
    machine,
    milvus_server,
    server_uri,
    timed,
    write_results,
)


def percentiles(times: list[float]) -> dict[str, float]:
    return {"p50": 1e3 * float(np.percentile(times, 50)),
            "p95": 1e3 * float(np.percentile(times, 95)), "n": len(times)}


def baseline_search(searcher, texts: list[str], k: int) -> list[list[int]]:
    """The search as it was: Strong consistency, every candidate's fields in the ANN reply."""
    return baseline_rank(searcher, searcher.embedder.encode(texts), k)


def baseline_rank(searcher, embeddings: np.ndarray, k: int) -> list[list[int]]:
    from vecpress.infra.milvus_fields import VECTOR
    from vecpress.infra.milvus_reads import OUTPUT_FIELDS

    snap = searcher.snapshot
    queries = snap.codec.project(embeddings)
    limit = k * snap.rescore_factor
    params = {"params": {"nprobe": snap.nprobe, "ef": max(limit, 64)}}
    found = searcher.store.client.search(snap.collection, data=list(snap.codec.for_milvus(queries)),
                                         limit=limit,
                                         search_params=params, output_fields=OUTPUT_FIELDS,
                                         anns_field=VECTOR, consistency_level="Strong")
    out = []
    for query, hits in zip(queries, found, strict=True):
        pks = np.array([h["id"] if "id" in h else h["pk"] for h in hits], dtype=np.int64)
        distances = np.array([h["distance"] for h in hits], dtype=np.float32)
        ok, vectors = snap.rescore.lookup(pks)
        distances[ok] = np.sum((vectors - query) ** 2, axis=1)
        out.append(pks[np.argsort(distances, kind="stable")[:k]].tolist())
    return out


def bare(store, collection: str, vector: np.ndarray, limit: int, strong: bool, nprobe: int) -> None:
    from vecpress.infra.milvus_fields import VECTOR
    from vecpress.infra.milvus_reads import OUTPUT_FIELDS

    params = {"params": {"nprobe": nprobe, "ef": max(limit, 64)}}
    store.client.search(collection, data=[vector], limit=limit, search_params=params,
                        output_fields=OUTPUT_FIELDS if strong else [], anns_field=VECTOR,
                        consistency_level="Strong" if strong else "Bounded")


def measure(label: str, settings, codec_settings, data: dict, latency_queries: int,
            restart=None) -> dict:
    """Load, index, then time both paths on one backend. ``restart`` (a server) stops and
    starts Milvus after the load and returns its URI: a server compacts and hands off segments
    for minutes after a bulk load, on the same 2 cores, which is not what a search meets later."""
    from vecpress.infra.milvus import MilvusStore
    from vecpress.tasks.codec.codec import fit_codec
    from vecpress.tasks.codec.refine import write_archive
    from vecpress.tasks.collection.loading import index_collection
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.recall import recall_at_k
    from vecpress.tasks.search.rescore_store import RescoreStore
    from vecpress.tasks.search.searcher import Searcher

    work = BENCH_DIR / "search_latency" / label
    shutil.rmtree(work, ignore_errors=True)
    corpus, pks, texts = data["corpus"], data["pks"], data["texts"]
    codec = fit_codec(data["sample"], codec_settings)
    archive = work / "archive.arrow"
    write_archive(str(archive), pks, codec.project(corpus), codec.refiner)
    rescore = RescoreStore([str(archive)], directory=work / "rescore")
    store = MilvusStore(settings.milvus)
    name = f"latency_{label}"
    store.drop(name)
    store.ensure_collection(name, codec.milvus_dim, codec.codec_id)
    projected = codec.for_milvus(codec.refiner.as_kept(codec.project(corpus)))
    store.upsert(name, [{"pk": int(pk), "doc_id": f"d{pk}", "chunk": 0, "text": text,
                         "source": f"/corpus/file{pk % 997}.txt", "codec_id": codec.codec_id,
                         "vector": v} for pk, text, v in zip(pks, texts, projected, strict=True)])
    plan, index, _ = index_collection(store, name, codec, None)
    if restart is not None:
        store.close()
        settings = settings.model_copy(update={"milvus": settings.milvus.model_copy(
            update={"uri": restart()})})
        store = MilvusStore(settings.milvus)
        store.load(name)
    # As open_searcher makes it: ORT threads that do not spin after a run (the projection, the
    # Milvus calls and rescoring follow on the same cores).
    embedder = OnnxEmbedder(data["artifact"], settings.model, threads=os.cpu_count() or 1,
                            spin=False)
    searcher = Searcher(store, name, codec, embedder, rescore, (plan.nprobe, plan.rescore_factor))
    queries, truth = data["query_texts"], data["truth"]
    out: dict = {"backend": label, "index": index, "codec": codec.report,
                 "rescore_factor": plan.rescore_factor,
                 "nprobe": plan.nprobe, "passages": len(pks)}
    # Recall from the same query vectors on both paths (the truth's): dynamic int8 embeds a text
    # a little differently in batches of another composition.
    vectors = data["query_vectors"]
    new = [[h.pk for h in hits] for start in range(0, len(vectors), 64)
           for hits in searcher.search_embeddings(vectors[start:start + 64], K)]
    old = [row for start in range(0, len(vectors), 8)
           for row in baseline_rank(searcher, vectors[start:start + 8], K)]
    out["recall@10 vecpress"] = recall_at_k(truth, new, K)
    out["recall@10 baseline"] = recall_at_k(truth, old, K)
    paths = {"vecpress end to end": lambda q: searcher.search([q], K),
             "baseline end to end": lambda q: baseline_search(searcher, [q], K)}
    vectors = codec.project(embedder.encode(queries[:latency_queries]))
    limit = K * plan.rescore_factor
    for key, run in paths.items():
        run(queries[0])  # warm
        out[f"latency_ms {key}"] = percentiles([timed(lambda q=q, r=run: r(q))
                                                for q in queries[:latency_queries]])
    for key, strong in (("vecpress bare Milvus", False), ("baseline bare Milvus", True)):
        out[f"latency_ms {key}"] = percentiles([
            timed(lambda v=v, s=strong: bare(store, name, v, limit, s, plan.nprobe)) for v in vectors])
    clock = Stopwatch()
    batch = searcher.search(queries[:256], K)
    out["batch of 256 queries: ms per query"] = 1e3 * clock.seconds / 256
    out["batch of 256 queries: results"] = sum(len(h) for h in batch)
    for key in ("end to end", "bare Milvus"):
        out[f"p50 ratio baseline / vecpress, {key}"] = (
            out[f"latency_ms baseline {key}"]["p50"] / out[f"latency_ms vecpress {key}"]["p50"])
    embedder.close()
    store.close()
    return out


def _restart(server) -> str:
    server.stop()
    server.start()
    return server_uri(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--only", choices=["lite", "server"], default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vecpress.infra.settings import CodecSettings, ModelSettings, Settings
    from vecpress.tasks.embed.export import export_for_settings

    _, texts, vectors, facts = embedded_corpus(args.passages + args.queries, "int8",
                                               os.cpu_count() or 1)
    base_rows, query_rows = split(len(vectors), args.queries)
    pks = np.arange(len(base_rows), dtype=np.int64) * 7919 + 11
    data = {"corpus": vectors[base_rows], "pks": pks, "texts": [texts[i] for i in base_rows],
            "query_texts": [texts[i] for i in query_rows], "query_vectors": vectors[query_rows],
            "truth": exact_top_k(vectors[base_rows], vectors[query_rows], pks),
            "sample": training_sample(vectors[base_rows]),
            "artifact": export_for_settings(ModelSettings(variant="int8"), MODEL_CACHE)}
    result = {"corpus": facts | {"passages_loaded": len(base_rows), "queries": len(query_rows)},
              "k": K, "nq": 1,
              "machine": machine("faiss", "pymilvus") | {"milvus_server": "2.3.5 (PyPI milvus)"},
              "backends": {}}
    model = ModelSettings(variant="int8")
    if args.only in (None, "lite"):
        settings = Settings(model=model, milvus={"uri": str(BENCH_DIR / "search_latency.db")})
        result["backends"]["lite"] = measure("lite", settings, CodecSettings(), data,
                                             args.latency_queries)
        print(json.dumps(result["backends"]["lite"], indent=1, default=str), flush=True)
    if args.only in (None, "server"):
        with milvus_server(BENCH_DIR / "search_latency" / "milvus-server") as server:
            settings = Settings(model=model, milvus={"uri": server_uri(server), "nprobe": 32,
                                                     "rescore_factor": 64})
            pq16 = CodecSettings(pca_dim=256, pq_m=16, random_rotation=True, ivf_nlist=32)
            result["backends"]["server"] = measure("server", settings, pq16, data, args.latency_queries,
                                                   restart=lambda: _restart(server))
        print(json.dumps(result["backends"]["server"], indent=1, default=str), flush=True)
    write_results(RESULTS / f"search_latency_{len(base_rows)}.json", result,
                  merge="backends" if args.only else None)


if __name__ == "__main__":
    main()
