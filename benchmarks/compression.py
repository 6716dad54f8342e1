"""Compression benchmark: bytes per vector and recall of the codec + Milvus layer.

Real texts of a corpus of benchmarks/corpora.py (docstrings by default: standard library and
site-packages docstring paragraphs), embedded once with the packaged MiniLM ONNX export and
cached under data/bench/ (git-ignored). Held-out texts are the queries; exact FP32 inner-product
top-10 over the corpus embeddings is the truth.

Per backend (Milvus Lite and a real Milvus 2.3.5 server): bytes per vector in Milvus (Lite: the
.db; server: its index files and vector binlogs on disk, loaded segments only), in the archive and
the rescoring store; recall@10 ANN-only and rescored; p50/p95 latency of single-query searches;
codec training time. The server codec is the auto-tune's own choice for --recall-target (its
whole default grid: PCA dim, rotation, M, probed lists, rescoring factor); with --defaults both
backends get exactly what an ingest without settings gets.

    .venv/bin/python benchmarks/compression.py [--passages 50000] [--variant int8] [--embed-only]
    .venv/bin/python benchmarks/compression.py --defaults --corpus fortunes --passages 10000 \
        --variant fp32 [--refine fp16] [--milvus-dim 0]
    .venv/bin/python benchmarks/compression.py --only server --server-pca-dim 256 --server-pq-m 16 \
        --server-nlist 32 --nprobe 16 --rescore-factor 32 --label-suffix _pq16_r32
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np
from embedded import K, embedded_corpus, exact_top_k, split, training_sample
from harness import (
    BENCH_DIR,
    RESULTS,
    Stopwatch,
    dir_bytes,
    machine,
    milvus_server,
    server_uri,
    timed,
    write_results,
)


def milvus_run(name: str, uri: str, codec, corpus: np.ndarray, pks: np.ndarray, queries: np.ndarray,
               truth: np.ndarray, rescore, settings, latency_queries: int) -> dict:
    """Load the corpus's projected vectors, index, then measure recall and latency via Searcher."""
    from vecpress.infra.milvus import MilvusStore
    from vecpress.tasks.collection.loading import index_collection
    from vecpress.tasks.recall import recall_at_k
    from vecpress.tasks.search.searcher import Searcher

    store = MilvusStore(settings.milvus)
    store.drop(name)
    store.ensure_collection(name, codec.milvus_dim, codec.codec_id)
    # What an ingest loads: the archive's vectors, decoded from the rescoring tier's codes.
    projected = codec.for_milvus(codec.refiner.as_kept(codec.project(corpus)))
    clock = Stopwatch()
    # Passage text is not part of the vector cost: short placeholder fields keep it out.
    store.upsert(name, [{"pk": int(pk), "doc_id": "", "chunk": 0, "text": "", "source": "",
                         "codec_id": "", "vector": v} for pk, v in zip(pks, projected, strict=True)])
    insert_s = clock.seconds
    if not settings.milvus.is_lite:
        store.client.flush(name)
    clock = Stopwatch()
    plan, index, _ = index_collection(store, name, codec, None)
    index_s = clock.seconds
    searcher = Searcher(store, name, codec, None, rescore, (plan.nprobe, plan.rescore_factor))
    out: dict = {"collection": name, "uri": uri, "index": index, "insert_seconds": insert_s,
                 "index_build_seconds": index_s, "rescore_factor": plan.rescore_factor,
                 "nprobe": plan.nprobe, "nlist": plan.nlist}
    for rescored in (False, True):
        found = []
        for start in range(0, len(queries), 50):
            found += searcher.search_embeddings(queries[start:start + 50], K, rescore=rescored)
        out[f"recall@10 {'rescored' if rescored else 'ANN only'}"] = recall_at_k(
            truth, [[h.pk for h in row] for row in found], K)
        times = [timed(lambda q=q, r=rescored: searcher.search_embeddings(q[None, :], K, rescore=r))
                 for q in queries[:latency_queries]]
        key = "rescored" if rescored else "ANN only"
        out[f"latency_ms {key}"] = {"p50": 1e3 * float(np.percentile(times, 50)),
                                    "p95": 1e3 * float(np.percentile(times, 95))}
    out["fields"] = {f["name"]: f.get("field_id") for f in
                     store.client.describe_collection(name)["fields"]}
    if not settings.milvus.is_lite:  # the query node's own account of what it holds
        out["loaded_segments"] = [{"segment_id": seg.segment_id, "rows": seg.num_rows,
                                   "mem_size": seg.mem_size, "index": seg.index_name}
                                  for seg in store.client.list_loaded_segments(name)]
    store.close()
    return out



def cached_autotune(settings, sample: np.ndarray, milvus, key: str):
    """The auto-tune table (minutes on 2 cores), cached in data/bench/ between benchmark runs."""
    from vecpress.tasks.codec.autotune import TuneResult, TuneRow, autotune

    path = BENCH_DIR / f"autotune-{key}.json"
    if path.exists():
        data = json.loads(path.read_text())
        rows = [TuneRow(**r) for r in data.pop("rows")]
        pareto = [TuneRow(**r) for r in data.pop("pareto", [])]
        chosen = TuneRow(**data.pop("chosen")) if data.get("chosen") else None
        data.pop("chosen", None)
        return TuneResult(**data, rows=rows, chosen=chosen, pareto=pareto)
    result = autotune(sample, settings, milvus)
    path.write_text(json.dumps(result.to_dict()))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--recall-target", type=float, default=0.95)
    parser.add_argument("--rescore-factor", type=int, default=16)
    parser.add_argument("--server-nlist", type=int, default=128)
    parser.add_argument("--server-pca-dim", type=int, help="fix the server codec's PCA dim and PQ M "
                        "(with --server-pq-m) instead of auto-tuning them")
    parser.add_argument("--server-pq-m", type=int)
    parser.add_argument("--nprobe", type=int, help="IVF lists probed (default: MilvusSettings)")
    parser.add_argument("--only", choices=["lite", "server"], default=None,
                        help="Run one backend; its entry replaces the one in an existing result JSON.")
    parser.add_argument("--label-suffix", default="",
                        help="Appended to the config names in the JSON (e.g. _r32 for another run).")
    parser.add_argument("--embed-only", action="store_true")
    parser.add_argument("--corpus", default="docstrings",
                        help="docstrings, descriptions, summaries or fortunes (benchmarks/corpora.py)")
    parser.add_argument("--refine", choices=["sq8", "sq6", "sq4", "fp16"],
                        help="the rescoring tier's codes (codec.refine; default: the setting's "
                             "default); named in the result file")
    parser.add_argument("--milvus-dim", type=int,
                        help="leading PCA components Milvus holds (codec.milvus_dim; 0: all, as "
                             "before it existed); named in the result file")
    parser.add_argument("--defaults", action="store_true",
                        help="every setting at its default (no recall target, derived PCA dim "
                             "and index plan) on both backends: what a new user gets")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vecpress.infra.settings import CodecSettings, MilvusSettings, Settings
    from vecpress.tasks.codec.codec import fit_codec
    from vecpress.tasks.codec.refine import write_archive
    from vecpress.tasks.codec.shape import resolve_shape
    from vecpress.tasks.search.rescore_store import (
        RescoreStore,
        current_version,
        version_bytes,
    )

    _, _, vectors, facts = embedded_corpus(args.passages + args.queries, args.variant,
                                           args.threads, args.corpus)
    if args.embed_only:
        print(facts)
        return
    base_rows, query_rows = split(len(vectors), args.queries)
    corpus, queries = vectors[base_rows], vectors[query_rows]
    pks = np.arange(len(corpus), dtype=np.int64) * 7919 + 11  # any distinct int64 keys
    truth = exact_top_k(corpus, queries, pks)
    work = BENCH_DIR / "compression"
    for label in ("lite", "server") if args.only is None else (args.only,):
        for name in (label, "lite.db" if label == "lite" else "milvus-server"):
            shutil.rmtree(work / name, ignore_errors=True)
    sample = training_sample(corpus)
    result: dict = {"corpus": facts | {"corpus_vectors": len(corpus), "queries": len(queries),
                                       "truth": f"exact inner product top-{K} over the "
                                                f"{facts['variant']} ONNX embeddings"},
                    "configs": {}}

    lite_codec = CodecSettings()  # the default codec: PCA-256, PQ32, Lite serves IVF_SQ8
    milvus_server = MilvusSettings(rescore_factor=args.rescore_factor,
                                   **({"nprobe": args.nprobe} if args.nprobe else {}))
    if args.defaults:  # what `vecpress ingest` does with no settings: resolve_shape, index plan
        milvus_server = MilvusSettings()
        server_codec, table = resolve_shape(sample, CodecSettings()), None
        if args.refine:
            server_codec = server_codec.model_copy(update={"refine": args.refine})
        if args.milvus_dim is not None:
            server_codec = server_codec.model_copy(update={"milvus_dim": args.milvus_dim or None})
        lite_codec = server_codec
    elif args.server_pca_dim and args.server_pq_m:
        server_codec = CodecSettings(pca_dim=args.server_pca_dim, pq_m=args.server_pq_m,
                                     random_rotation=True, ivf_nlist=args.server_nlist)
        table = None
    else:  # what --recall-target does in an ingest: the auto-tune alone chooses, all defaults
        milvus_server = MilvusSettings()
        tuned = cached_autotune(CodecSettings(recall_target=args.recall_target), sample,
                                milvus_server, f"{args.corpus}-{facts['variant']}-{len(corpus)}-"
                                f"{args.recall_target}-v2")
        print("\n".join(tuned.lines()), flush=True)
        server_codec = tuned.settings(CodecSettings())
        table = tuned.to_dict() | {"applied": True}
    plans = [("lite", lite_codec, Settings(milvus=MilvusSettings(uri=str(work / "lite.db"))), None),
             ("server", server_codec, None, table)]
    plans = [p for p in plans if args.only in (None, p[0])]
    for label, codec_settings, settings, table in plans:
        codec = fit_codec(sample, codec_settings, autotune=table)
        print(f"{label}: codec {codec.report['codec_id']} trained in "
              f"{codec.report['train_seconds']:.1f} s", flush=True)
        archive = work / label / "runs" / "r" / "archive" / "part-00000.arrow"
        write_archive(str(archive), pks, codec.project(corpus), codec.refiner)
        rescore = RescoreStore([str(archive)], directory=work / label / "rescore")
        # Per entry: --only runs merge into one JSON, and the docstring corpus changes with the
        # packages installed, so each configuration keeps the corpus it was measured on.
        entry = {"corpus": result["corpus"], "codec": codec.report,
                 "refine": codec.refiner.kind, "milvus_dim": codec.milvus_dim,
                 "archive_bytes_per_vector": archive.stat().st_size / len(corpus),
                 "rescore_store_bytes_per_vector": version_bytes(
                     *current_version(rescore.directory))[0] / len(corpus),
                 "rescore_mapped_bytes_per_vector": rescore.nbytes / len(corpus)}
        if label == "lite":
            entry["milvus"] = milvus_run("bench_lite", settings.milvus.uri, codec, corpus, pks,
                                         queries, truth, rescore, settings, args.latency_queries)
            entry["milvus"]["db_bytes_per_vector"] = dir_bytes(work / "lite.db") / len(corpus)
        else:
            entry["milvus"] = server_run(work, codec, corpus, pks, queries, truth, rescore,
                                         milvus_server, args.latency_queries)
        result["configs"][label + args.label_suffix] = entry
        print(json.dumps(entry["milvus"], indent=1, default=str), flush=True)
    result["fp32_bytes_per_vector"] = 4 * corpus.shape[1]
    result["machine"] = machine("faiss")
    name = f"compression_{facts['variant']}_{len(corpus)}" if args.corpus == "docstrings" and \
        not args.defaults else f"compression_defaults_{args.corpus}_{facts['variant']}_{len(corpus)}"
    name += f"_refine_{args.refine}" if args.refine else ""
    name += f"_milvus_dim_{args.milvus_dim or 'all'}" if args.milvus_dim is not None else ""
    write_results(RESULTS / f"{name}.json", result, merge="configs" if args.only else None)


def server_run(work: Path, codec, corpus, pks, queries, truth, rescore, milvus, latency_queries):
    """The same on a real Milvus 2.3.5 standalone server; sizes come from its files on disk."""
    from vecpress.infra.settings import Settings

    base = work / "milvus-server"
    with milvus_server(base) as server:
        uri = server_uri(server)
        settings = Settings(milvus=milvus.model_copy(update={"uri": uri}))
        out = milvus_run("bench_server", uri, codec, corpus, pks, queries, truth, rescore,
                         settings, latency_queries)
    # Only the loaded segments count: compaction leaves the old segments' files until GC runs.
    # Paths: index_files/<build>/<version>/<partition>/<segment>/IVF_PQ and
    # insert_log/<collection>/<partition>/<segment>/<field id>/<log id>.
    loaded = {str(seg["segment_id"]) for seg in out["loaded_segments"]}
    rows = sum(seg["rows"] for seg in out["loaded_segments"])
    vector_field = str(out["fields"]["vector"])
    files = [f for f in base.rglob("*") if f.is_file()]
    index_files = [f for f in files if "index_files" in f.parts and f.parent.name in loaded]
    raw_vector = [f for f in files if "insert_log" in f.parts and f.parent.name == vector_field
                  and f.parent.parent.name in loaded]
    out["rows_in_loaded_segments"] = rows
    out["index_files"] = [(f.relative_to(base).as_posix(), f.stat().st_size) for f in index_files]
    out["index_files_bytes_per_vector"] = sum(f.stat().st_size for f in index_files) / rows
    out["raw_vector_binlog_bytes_per_vector"] = sum(f.stat().st_size for f in raw_vector) / rows
    out["query_node_mem_bytes_per_vector"] = sum(s["mem_size"] for s in out["loaded_segments"]) / rows
    dim, m, nlist = codec.dim, codec.report["pq_m"], int(out["index"].get("nlist", 0))
    fixed = 4 * dim * (nlist + 2 ** codec.report["pq_nbits"])  # coarse centroids + PQ codebooks
    out["index_fixed_bytes_computed"] = fixed
    out["index_bytes_per_vector_without_fixed"] = (sum(f.stat().st_size for f in index_files)
                                                   - fixed * len(index_files)) / rows
    out["index_code_bytes_per_vector_nominal"] = m * codec.report["pq_nbits"] / 8
    return out


if __name__ == "__main__":
    main()
