"""Milvus upserts by rows (``MilvusClient.upsert``), by columns, and into Milvus Lite's engine.

Why: the whole-command profile of a 300k-passage Lite ingest (benchmarks/results/
profile_ingest_300000.json) put 22.8 of the flow process's 80 busy seconds in pymilvus turning row
dicts into the request, one value at a time. A column-wise request builds each field in one go.

Both paths write the same rows (the collection schema of every vecpress collection, 32-d vectors,
texts of ~330 bytes like real passages) into fresh collections of one Milvus Lite file, or of the
Milvus 2.3.5 server of the ``milvus`` dev dependency, in batches of 2,000 rows: the row path first,
then the column path, then the row path again, so neither gains from running second. On Milvus Lite,
``MilvusStore.upsert`` hands the rows to the engine in this process (``infra/lite_engine.py``), and
the column path is pymilvus's request over the local gRPC port; both run between the row paths.
Printed and written
(benchmarks/results/upsert_columns.json): µs per row of building the request alone and of the whole
upsert, and the ratio.

    .venv/bin/python benchmarks/upsert_columns.py [--rows 40000] [--milvus lite|server]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time

import harness
import numpy as np
import pyarrow as pa

BATCH = 2_000


def rows_of(count: int, dim: int) -> list[dict]:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((count, dim)).astype(np.float32)
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
             "passages", "of", "real", "text", "are", "longer"]
    return [{"pk": i, "doc_id": f"docs/file-{i // 7}.md", "chunk": i % 7,
             "text": " ".join(words[(i + j) % len(words)] for j in range(60)),
             "source": f"/data/corpus/part-{i // 1000}.jsonl", "codec_id": "codec-0",
             "metadata": f'{{"team": "t{i % 5}", "year": {2000 + i % 25}}}',
             "vector": vectors[i]} for i in range(count)]


def timed(fn, rows: list[dict]) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), BATCH):
        fn(rows[start:start + BATCH])
    return 1e6 * (time.perf_counter() - started) / len(rows)


def as_table(rows: list[dict]) -> pa.Table:
    """The rows as ``loading.shard_table`` hands a shard to ``MilvusStore.upsert_table``."""
    vectors = np.stack([r["vector"] for r in rows])
    offsets = np.arange(0, vectors.size + 1, vectors.shape[1], dtype=np.int32)
    return pa.table({k: [r[k] for r in rows] for k in rows[0] if k != "vector"}
                    | {"vector": pa.ListArray.from_arrays(offsets, pa.array(vectors.ravel()))})


def timed_table(fn, table: pa.Table) -> float:
    started = time.perf_counter()
    for start in range(0, table.num_rows, BATCH):
        fn(table.slice(start, BATCH))
    return 1e6 * (time.perf_counter() - started) / table.num_rows


def lite_flushes(store, count: int) -> dict[str, float]:
    """µs a row of flushing the same rows with Lite's own ``MemTable._build_data_table`` and
    with the one ``lite_arrow.flush_in_columns`` installs (``engine``'s rows, then ``table``'s)."""
    from milvus_lite.storage.memtable import MemTable

    ours = MemTable._build_data_table
    MemTable._build_data_table = ours.replaced
    try:
        started = time.perf_counter()
        store.flush("engine")
        own = 1e6 * (time.perf_counter() - started) / count
    finally:
        MemTable._build_data_table = ours
    started = time.perf_counter()
    store.flush("table")
    return {"flush_lite_own": own,
            "flush_in_columns": 1e6 * (time.perf_counter() - started) / count}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--milvus", choices=["lite", "server"], default="lite")
    args = parser.parse_args()
    work = harness.BENCH_DIR / "upsert_columns"
    shutil.rmtree(work, ignore_errors=True)
    if args.milvus == "lite":
        measure(args.rows, str(work / "m.db"), "lite")
    else:
        with harness.milvus_server(work / "server") as server:
            measure(args.rows, harness.server_uri(server), "server")


def measure(count: int, uri: str, backend: str) -> None:

    from vecpress.infra.milvus import MilvusStore, as_columns
    from vecpress.infra.settings import MilvusSettings

    store = MilvusStore(MilvusSettings(uri=uri))
    rows = rows_of(count, 32)
    result: dict = {"machine": harness.machine("pymilvus", "milvus_lite", git=True),
                    "milvus": backend,
                    "rows": count, "batch_rows": BATCH, "us_per_row": {}}
    names = ("rows_a", "columns", "engine", "table", "rows_b") if backend == "lite" else (
        "rows_a", "columns", "rows_b")
    try:
        for name in names:
            store.drop(name)
            store.ensure_collection(name, 32, "codec-0")
        schema = store.client.describe_collection("columns")  # pymilvus needs its own form
        handler = store.client.plain._get_connection()
        us = result["us_per_row"]
        us["request_rows"] = timed(lambda b: handler._prepare_row_upsert_request(
            "rows_a", b, None, schema=schema), rows)
        us["request_columns"] = timed(lambda b: handler._prepare_batch_upsert_request(
            "columns", as_columns(b, schema["fields"]), schema=schema), rows)
        us["upsert_rows_first"] = timed(lambda b: store.client.upsert("rows_a", b), rows)
        us["upsert_columns"] = timed(lambda b: store.client.upsert_columns(
            "columns", as_columns(b, schema["fields"]), schema), rows)
        if backend == "lite":
            us["upsert_engine"] = timed(lambda b: store.upsert("engine", b), rows)
            us["upsert_engine_existing_rows"] = timed(lambda b: store.upsert("engine", b), rows)
            table = as_table(rows)
            us["upsert_table_in_columns"] = timed_table(lambda t: store.upsert_table("table", t),
                                                        table)
            us.update(lite_flushes(store, count))
        us["upsert_rows_again"] = timed(lambda b: store.client.upsert("rows_b", b), rows)
        for name in names:
            store.flush(name)
        counts = {name: store.stored_rows(name) for name in names}
        assert set(counts.values()) == {count}, counts
        for name in names:
            store.drop(name)
    finally:
        store.close()
    result["us_per_row"] = {k: round(v, 1) for k, v in us.items()}
    rows_us = (us["upsert_rows_first"] + us["upsert_rows_again"]) / 2
    result["upsert_rows_over_columns"] = round(rows_us / us["upsert_columns"], 2)
    result["request_rows_over_columns"] = round(us["request_rows"] / us["request_columns"], 2)
    if "upsert_engine" in us:
        result["upsert_columns_over_engine"] = round(us["upsert_columns"] / us["upsert_engine"], 2)
    for key, value in result["us_per_row"].items():
        print(f"{key:22} {value:8.1f} µs/row")
    print(f"whole upsert, rows ÷ columns: {result['upsert_rows_over_columns']}×; "
          f"request alone: {result['request_rows_over_columns']}×")
    if "upsert_table_in_columns" in us:
        result["upsert_engine_over_table"] = round(us["upsert_engine"]
                                                   / us["upsert_table_in_columns"], 1)
        result["flush_own_over_columns"] = round(us["flush_lite_own"] / us["flush_in_columns"], 1)
        print(f"Lite engine rows ÷ table in columns: {result['upsert_engine_over_table']}×; "
              f"flush, Lite's own ÷ in columns: {result['flush_own_over_columns']}×")
    if "upsert_columns_over_engine" in result:
        print(f"whole upsert, pymilvus columns ÷ Lite engine: {result['upsert_columns_over_engine']}×")
    path = harness.RESULTS / "upsert_columns.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    harness.write_results(path, {k: v for k, v in earlier.items() if k in ("lite", "server")}
                          | {backend: result})


if __name__ == "__main__":
    main()
