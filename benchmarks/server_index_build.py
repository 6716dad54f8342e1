"""What one segment's index build costs the Milvus 2.3.5 server, by index type: wall seconds
from ``create_index`` to every row indexed, and the server's CPU seconds meanwhile.

Why: in a nano-model ingest of 300k passages with bulk import on 2 cores, the server took 55.8
CPU-s with IVF_PQ against 12.5 with FLAT (``results/scale_nano_server_bulk_300000_stop49_*``).
Here one flushed segment of 50,000 random 16-d vectors (the nano benchmark's PCA width; one
bulk-import file's rows) is indexed on an otherwise idle server, once per type and parameters,
then IVF_PQ again on segments of 100k and 200k rows.

    .venv/bin/python benchmarks/server_index_build.py

Writes benchmarks/results/server_index_build.json.
"""

from __future__ import annotations

import shutil
import time

import harness
import numpy as np
import psutil
from harness import BENCH_DIR, RESULTS, machine, write_results

ROWS, DIM = 50_000, 16
LARGER = (100_000, 200_000)  # the IVF_PQ build again on larger segments: its cost per row
CASES = [("IVF_FLAT", {"nlist": 1024}), ("IVF_SQ8", {"nlist": 1024}),
         ("IVF_PQ", {"nlist": 256, "m": 4, "nbits": 8}),
         ("IVF_PQ", {"nlist": 1024, "m": 4, "nbits": 8}),
         ("IVF_PQ", {"nlist": 2227, "m": 4, "nbits": 8})]


def build(client, server_cpu, name: str, vectors: np.ndarray, kind: str, params: dict) -> dict:
    rows = len(vectors)
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("v", DataType.FLOAT_VECTOR, dim=DIM)
    client.create_collection(name, schema=schema)
    for start in range(0, rows, 10_000):
        client.insert(name, [{"pk": k, "v": vectors[k].tolist()} for k in range(start, start + 10_000)])
    client.flush(name)
    index = client.prepare_index_params()
    index.add_index("v", index_type=kind, metric_type="L2", params=params)
    started, cpu = time.perf_counter(), server_cpu()
    client.create_index(name, index)
    while int(client.describe_index(name, "v").get("indexed_rows", 0)) < rows:
        time.sleep(0.2)
    return {"rows": rows, "index_type": kind, "params": params,
            "wall_s": round(time.perf_counter() - started, 1), "server_cpu_s": round(server_cpu() - cpu, 1)}


def main() -> None:
    from pymilvus import MilvusClient

    base = BENCH_DIR / "server-index-build"
    shutil.rmtree(base, ignore_errors=True)
    vectors = np.random.default_rng(0).standard_normal((max(LARGER), DIM)).astype(np.float32)
    rows = []
    with harness.milvus_server(base) as server:
        proc = psutil.Process(server.server_proc.pid)
        client = MilvusClient(uri=harness.server_uri(server))
        for i, (kind, params) in enumerate(CASES):
            rows.append(build(client, lambda: sum(proc.cpu_times()[:2]), f"build_{i}",
                              vectors[:ROWS], kind, params))
            print(rows[-1], flush=True)
        for n in LARGER:
            rows.append(build(client, lambda: sum(proc.cpu_times()[:2]), f"build_{n}",
                              vectors[:n], "IVF_PQ", {"nlist": 1024, "m": 4, "nbits": 8}))
            print(rows[-1], flush=True)
    write_results(RESULTS / "server_index_build.json", {
        "what": __doc__.split("\n\n")[0], "machine": machine("pymilvus", git=True),
        "server": "milvus 2.3.5 standalone (PyPI milvus package)", "dim": DIM,
        "note": "wall includes the index coordinator's scheduling (about a second a build)",
        "builds": rows})


if __name__ == "__main__":
    main()
