"""The two ways of loading a Milvus 2.3.5 server that bulk_load.py compares, each into a fresh
collection and timed until the server counts every row: concurrent upserts in 8 MiB batches, and
bulk import of files (written, submitted, waited for); and probes of which import paths and APIs
this server accepts.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bulk_load_files import collection_schema, make_columns, write_with_pyarrow
from harness import Stopwatch
from pymilvus import MilvusClient, utility

from vecpress.infra.milvus import MilvusStore, byte_batches
from vecpress.infra.settings import MilvusSettings

COLLECTION = "bulk_load_bench"
ALIAS = "bulk_load_bench"  # ORM connection of the bulk-insert calls
BATCH_BYTES = 8 << 20  # milvus.insert_batch_bytes
COUNT_TIMEOUT_S = 600.0


def fresh_collection(client: MilvusClient) -> None:
    """An empty benchmark collection: every measurement starts from none."""
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    client.create_collection(COLLECTION, schema=collection_schema(), consistency_level="Strong")


def flush_and_count(client: MilvusClient, n: int) -> float:
    """Flush, then wait until the collection's stats count ``n`` rows; the seconds it took."""
    clock = Stopwatch()
    client.flush(COLLECTION)
    while int(client.get_collection_stats(COLLECTION)["row_count"]) < n:
        if clock.seconds > COUNT_TIMEOUT_S:
            raise TimeoutError(f"{COLLECTION} did not count {n} rows in {COUNT_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    return clock.seconds


def run_upserts(uri: str, client: MilvusClient, rows: list[dict[str, Any]], threads: int
                ) -> dict[str, Any]:
    """``threads`` connections upsert the 8 MiB batches round-robin, as vecpress does
    (``MilvusStore.upsert``: column-wise requests); then flush and count."""
    fresh_collection(client)
    batches = list(byte_batches(rows, BATCH_BYTES))
    clients = [MilvusStore(MilvusSettings(uri=uri, insert_batch_bytes=BATCH_BYTES))
               for _ in range(threads)]

    def work(k: int) -> int:
        return sum(clients[k].upsert(COLLECTION, batch) for batch in batches[k::threads])

    try:
        clock = Stopwatch()
        with ThreadPoolExecutor(threads) as pool:
            written = sum(pool.map(work, range(threads)))
        upsert_s = clock.seconds
        count_s = flush_and_count(client, len(rows))
    finally:
        for c in clients:
            c.close()
    assert written == len(rows)
    total = upsert_s + count_s
    return {"method": f"upsert x{threads}", "threads": threads, "batches": len(batches),
            "rows_per_batch": len(batches[0]), "upsert_s": round(upsert_s, 2),
            "flush_count_s": round(count_s, 2), "total_s": round(total, 2),
            "rows_per_s": round(len(rows) / total)}


def wait_tasks(tasks: list[int]) -> dict[int, Any]:
    """Poll bulk-insert tasks until each is ``Completed`` or ``Failed``; their final states."""
    clock = Stopwatch()
    final: dict[int, Any] = {}
    while len(final) < len(tasks):
        for task in tasks:
            if task not in final:
                state = utility.get_bulk_insert_state(task, using=ALIAS)
                if state.state_name in ("Completed", "Failed"):
                    final[task] = state
        if clock.seconds > COUNT_TIMEOUT_S:
            raise TimeoutError(f"bulk insert tasks {sorted(set(tasks) - set(final))} still running")
        if len(final) < len(tasks):
            time.sleep(0.1)
    return final


def import_files(client: MilvusClient, batches: list[list[str]], n: int) -> dict[str, Any]:
    """Submit every file set with ``utility.do_bulk_insert``, wait for each task, flush, count."""
    clock = Stopwatch()
    tasks = [utility.do_bulk_insert(COLLECTION, files=files, using=ALIAS) for files in batches]
    states = wait_tasks(tasks)
    failed = [f"task {t}: {s.failed_reason}" for t, s in states.items() if s.state_name == "Failed"]
    if failed:
        raise RuntimeError("bulk insert failed: " + "; ".join(failed))
    import_s = clock.seconds
    count_s = flush_and_count(client, n)
    return {"tasks": len(tasks), "imported_rows": sum(s.row_count for s in states.values()),
            "import_s": round(import_s, 2), "flush_count_s": round(count_s, 2)}


def probe_paths(client: MilvusClient, storage: Path, server_cwd: Path) -> dict[str, str]:
    """Which path of one Parquet file inside ``localStorage.path`` the server's import accepts."""
    fresh_collection(client)
    files = write_with_pyarrow(make_columns(10, seed=1), storage / "bulk-probe")
    path = Path(files[0][0])
    inside = str(path.relative_to(storage))
    candidates = {"absolute": str(path), "relative to localStorage.path": inside,
                  "relative to the server's working directory": str(path.relative_to(server_cwd)),
                  "bucket-prefixed": f"a-bucket/{inside}"}
    out = {}
    for label, name in candidates.items():
        try:
            state = wait_tasks([utility.do_bulk_insert(COLLECTION, files=[name], using=ALIAS)])
            final = next(iter(state.values()))
            out[label] = f"{name}: {final.state_name} {final.failed_reason}".strip()
        except Exception as exc:  # the message is the finding
            out[label] = f"{name}: submit failed: {getattr(exc, 'message', exc)}"
    shutil.rmtree(storage / "bulk-probe", ignore_errors=True)
    return out


def run_bulk(client: MilvusClient, label: str, write: Callable[[Path], list[list[str]]],
             n: int, work: Path) -> dict[str, Any]:
    """Write the files (timed apart), import them and count; the files are removed afterwards."""
    fresh_collection(client)
    folder = work / "bulk-files" / label.replace(" ", "_").replace("(", "").replace(")", "")
    shutil.rmtree(folder, ignore_errors=True)
    try:
        clock = Stopwatch()
        batches = write(folder)
        write_s = clock.seconds
        size = sum(os.path.getsize(f) for files in batches for f in files)
        result = import_files(client, batches, n)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = write_s + result["import_s"] + result["flush_count_s"]
    server_s = result["import_s"] + result["flush_count_s"]
    return {"method": label, "write_s": round(write_s, 2), **result,
            "file_mib": round(size / 2**20, 1), "total_s": round(total, 2),
            "rows_per_s": round(n / total), "import_rows_per_s": round(n / server_s)}


def probe_rest_import(bulk_import: Callable[..., Any], uri: str, path: str) -> str:
    """What the REST import (``/v2/vectordb/jobs/import/create``) answers on this server."""
    log = logging.getLogger("pymilvus.bulk_writer")
    level = log.level
    log.setLevel(logging.CRITICAL)  # bulk_import logs its failure at ERROR before raising it
    try:
        response = bulk_import(url=uri, collection_name=COLLECTION, files=[[path]])
        return f"answered {response.status_code}: {response.text[:200]}"
    except Exception as exc:  # the message is the finding
        message = str(getattr(exc, "message", exc))
        status = re.search(r"status code: \d+", message)
        return f"{type(exc).__name__}: {message.split(', error:')[0]}" + (f", {status[0]}" if status else "")
    finally:
        log.setLevel(level)
