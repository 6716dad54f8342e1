"""`vecpress api` under load: 64 concurrent clients for 60 s, before and after a change.

A 50,000-passage collection (docstring paragraphs, the packaged MiniLM in its default variant,
default codec) is ingested once onto a Milvus 2.3.5 server (cached under data/bench/api_load/),
and indexed completely before any load. Then each checkout's ``vecpress api`` serves it in
turn (``--before PATH``: another checkout, run with ``PYTHONPATH=PATH``; the current checkout is
"after"), and an asyncio client keeps 64 requests in
flight for 60 s, each one query of held-out docstring text (distinct: the query cache does not
help; ``--repeat`` draws from 200 queries instead), k = 10. Reported per checkout: queries/s,
p50/p95/p99 latency, errors by status, and the server's peak RSS (sampled every 0.2 s), with
the ratio after/before. The client, the server and Milvus share the machine's cores.

``--nprobe N`` serves with ``milvus.nprobe`` N instead of each build's plan, and reports the
recall@10 of its results against the plan's.

    .venv/bin/python benchmarks/api_load.py --before /tmp/before [--seconds 60] [--nprobe N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import psutil
from corpora import docstrings, write_jsonl
from harness import BENCH_DIR, RESULTS, ROOT, machine, milvus_server, server_uri, write_results

WORK = BENCH_DIR / "api_load"
COLLECTION = "load"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ingest(uri: str, passages: int) -> Path:
    """The collection on the server (once; a marker file says it is complete)."""
    root = WORK / "data"
    done = WORK / f"ingested-{passages}"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    corpus = write_jsonl(WORK / "corpus.jsonl",
                         ({"id": i, "text": t} for i, t in docstrings(passages)))
    run = subprocess.run([sys.executable, "-m", "vecpress", "ingest", str(corpus), "--collection",
                          COLLECTION, "--storage-root", str(root), "--milvus-uri", uri,
                          "--json"], capture_output=True, text=True, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(run.stderr[-3000:])
    done.write_text(run.stdout[-2000:])
    return root


def queries(passages: int, count: int) -> list[str]:
    """Held-out docstring paragraphs (after the ingested ones), cut to their first 30 words."""
    texts = [t for _, t in docstrings(passages + count)][passages:]
    return [" ".join(t.split()[:30]) for t in texts]


def embed_ceiling(root: Path, texts: list[str], batch: int = 16, count: int = 1000) -> dict:
    """Queries/s of embedding ``count`` of the load's queries alone, in this process, on every
    core, ``batch`` at a time (the API's ``max_batch_queries`` default): no HTTP, no Milvus, no
    rescoring. The most any server could answer on this machine with this model."""
    from vecpress.infra.settings import Settings
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.export import export_for_settings

    settings = Settings(storage_root=str(root))
    artifact = export_for_settings(settings.model, settings.model_cache_dir)
    embedder = OnnxEmbedder(artifact, settings.model, threads=0, spin=False)
    sample = texts[:count]
    embedder.encode(sample[:batch])  # warm
    started = time.perf_counter()
    for start in range(0, len(sample), batch):
        embedder.encode(sample[start:start + batch])
    seconds = time.perf_counter() - started
    embedder.close()
    return {"queries_per_s": round(len(sample) / seconds, 1), "batch": batch,
            "variant": artifact.variant, "queries": len(sample)}


def index_complete(uri: str, timeout_s: float = 900) -> dict:
    """Wait until the server has indexed every row of the collection (a fresh load may still be
    indexing sealed segments, and then searches scan them whole); the state and the wait."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    name = client.describe_alias(COLLECTION)["collection_name"]
    index = client.list_indexes(name)[0]
    started = time.monotonic()
    state = client.describe_index(name, index)
    while (state.get("pending_index_rows", 0) or state.get("indexed_rows", 0) <
           state.get("total_rows", 0)) and time.monotonic() - started < timeout_s:
        time.sleep(2)
        state = client.describe_index(name, index)
    client.close()
    return {"index_type": state.get("index_type"), "indexed_rows": state.get("indexed_rows"),
            "total_rows": state.get("total_rows"),
            "waited_s": round(time.monotonic() - started, 1)}


def search_ceiling(root: Path, uri: str, texts: list[str], nprobe: int | None, batch: int = 16,
                   count: int = 1000) -> dict:
    """Queries/s of Milvus's search plus rescoring alone, in this process, ``batch`` embedded
    queries at a time (embedded beforehand, untimed): no HTTP, no model. With one query's
    latency alone (p50 of 100). With ``embed_ceiling`` it splits the server's time. With
    ``nprobe`` (``milvus.nprobe`` instead of the plan's), also the recall@10 of its results
    against the plan's own on 200 queries."""
    from vecpress.infra.settings import Settings
    from vecpress.tasks.search.opening import open_searcher

    searcher = open_searcher(Settings(collection=COLLECTION, storage_root=str(root),
                                      milvus={"uri": uri}))
    embeddings = searcher.embedder.encode_queries(texts[:count])
    plan_nprobe = searcher.snapshot.nprobe
    recall = None
    if nprobe:
        planned = searcher.search_embeddings(embeddings[:200], 10)
        searcher.snapshot = replace(searcher.snapshot, nprobe=nprobe)
        probed = searcher.search_embeddings(embeddings[:200], 10)
        recall = round(float(np.mean([len({h.pk for h in a} & {h.pk for h in b}) / max(len(a), 1)
                                      for a, b in zip(planned, probed, strict=True)])), 4)
    searcher.search_embeddings(embeddings[:batch], 10)  # warm
    started = time.perf_counter()
    for start in range(0, len(embeddings), batch):
        searcher.search_embeddings(embeddings[start:start + batch], 10)
    seconds = time.perf_counter() - started
    alone = []
    for i in range(100):
        began = time.perf_counter()
        searcher.search_embeddings(embeddings[i:i + 1], 10)
        alone.append(time.perf_counter() - began)
    searcher.embedder.close()
    return {"queries_per_s": round(len(embeddings) / seconds, 1), "batch": batch,
            "queries": len(embeddings), "nprobe": searcher.snapshot.nprobe,
            "plan_nprobe": plan_nprobe, "recall_at_10_vs_plan_nprobe": recall,
            "rescore_factor": searcher.snapshot.rescore_factor,
            "one_query_p50_ms": round(float(np.median(alone)) * 1000, 1)}


class Sampler(threading.Thread):
    """The peak RSS of a process, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process, self.peak, self.stop = psutil.Process(pid), 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.NoSuchProcess:
                return


async def load(base: str, texts: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def one_client(seed: int) -> None:
            pick = random.Random(seed)
            while time.monotonic() < deadline:
                start = time.monotonic()
                try:
                    answer = await client.post("/search", json={"query": pick.choice(texts),
                                                                "k": 10})
                    code = str(answer.status_code)
                except httpx.HTTPError as exc:
                    code = type(exc).__name__
                if code == "200":
                    latencies.append(time.monotonic() - start)
                else:
                    errors[code] = errors.get(code, 0) + 1

        began = time.monotonic()
        await asyncio.gather(*[one_client(i) for i in range(clients)])
        wall = time.monotonic() - began
    ms = np.array(latencies) * 1000
    return {"queries_per_s": round(len(latencies) / wall, 1), "answered": len(latencies),
            "errors": errors, "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def serve(checkout: Path, root: Path, texts: list[str], args: argparse.Namespace) -> dict:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(checkout)} | (
        {"VECPRESS_MILVUS__NPROBE": str(args.nprobe)} if args.nprobe else {})
    process = subprocess.Popen(
        [sys.executable, "-m", "vecpress", "api", "--collection", COLLECTION, "--storage-root",
         str(root), "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base, process)
        for text in texts[:20]:  # warm: the model's first calls, Milvus's loaded segments
            httpx.post(f"{base}/search", json={"query": text, "k": 10}, timeout=60)
        idle = psutil.Process(process.pid).memory_info().rss
        sampler = Sampler(process.pid)
        sampler.start()
        result = asyncio.run(load(base, texts, args.clients, args.seconds))
        sampler.stop.set()
        result |= {"idle_rss_mb": round(idle / 2**20), "peak_rss_mb": round(sampler.peak / 2**20)}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            result = locals().get("result", {}) | {"stopped": "SIGKILL after 30 s"}
    return result


def _wait(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(process.stderr.read()[-3000:] if process.stderr else "exited")
        for path in ("/readyz", "/healthz"):  # the old server has no /readyz
            try:
                if httpx.get(base + path, timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                break
        time.sleep(0.5)
    raise SystemExit("the server did not become ready in 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the baseline")
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeat", action="store_true", help="200 distinct queries, repeated")
    parser.add_argument("--nprobe", type=int, help="milvus.nprobe for both servers instead of "
                        "each build's plan (also reports recall@10 against the plan's nprobe)")
    args = parser.parse_args()
    texts = queries(args.passages, 200 if args.repeat else 20_000)
    with milvus_server(WORK / "milvus") as server:
        root = ingest(server_uri(server), args.passages)
        index = index_complete(server_uri(server))
        ceiling = embed_ceiling(root, texts)
        milvus_alone = search_ceiling(root, server_uri(server), texts, args.nprobe)
        runs = {name: serve(checkout, root, texts, args)
                for name, checkout in (("before", args.before), ("after", ROOT))}
    before, after = runs["before"], runs["after"]
    result = {"machine": machine("onnxruntime", "pymilvus", git=True), "passages": args.passages,
              "clients": args.clients, "seconds": args.seconds, "queries": len(texts),
              "nprobe": args.nprobe or "each build's plan",
              "repeated_queries": args.repeat, "k": 10, "before": before, "after": after,
              "ratio_queries_per_s": round(after["queries_per_s"] / before["queries_per_s"], 2),
              "index": index, "embed_only_ceiling": ceiling,
              "search_and_rescore_only_ceiling": milvus_alone,
              "after_over_ceiling": round(after["queries_per_s"] / ceiling["queries_per_s"], 2)}
    print(f"{'':8} {'q/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>10} "
          f"{'peak RSS MB':>12}")
    for name, run in runs.items():
        print(f"{name:8} {run['queries_per_s']:8.1f} {run['p50_ms']:8.1f} {run['p95_ms']:8.1f} "
              f"{run['p99_ms']:8.1f} {sum(run['errors'].values()):10} {run['peak_rss_mb']:12}")
    print(f"after / before queries/s: {result['ratio_queries_per_s']}; embedding alone, no "
          f"server: {ceiling['queries_per_s']} q/s (after / that: {result['after_over_ceiling']});"
          f" Milvus search + rescoring alone: {milvus_alone['queries_per_s']} q/s, one query "
          f"{milvus_alone['one_query_p50_ms']} ms; index {index}")
    suffix = ("_repeated" if args.repeat else "") + (f"_nprobe{args.nprobe}" if args.nprobe else "")
    write_results(RESULTS / f"api_load_{args.passages}{suffix}.json", result)
    print(json.dumps(result["after"]))


if __name__ == "__main__":
    main()
