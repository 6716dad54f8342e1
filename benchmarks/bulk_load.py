"""Loading speed of a Milvus 2.3.5 server: concurrent upserts against bulk import from files.

vecpress loads a collection with ``MilvusStore.upsert`` (``MilvusClient.upsert`` in batches of
about ``milvus.insert_batch_bytes`` = 8 MiB). Milvus also offers bulk import: files written on the
client (``pymilvus.bulk_writer.LocalBulkWriter``: Parquet, NumPy or JSON) that the server reads
itself (``utility.do_bulk_insert``, polled with ``utility.get_bulk_insert_state``). This script
measures both, on the real standalone server of the PyPI ``milvus==2.3.5`` package started here
in a temporary folder, to tell whether, and above which size, bulk import would pay off:

- ``upsert xN``: N client threads (own connection each) upsert disjoint 8 MiB batches, then one
  flush; the clock stops when ``get_collection_stats`` counts every row;
- ``bulk <format> (<writer>)``: file writing (``LocalBulkWriter.append_row`` + ``commit``, or
  the same Parquet layout written by pyarrow straight from the column arrays) timed apart from
  the import (submit every file, wait until each task is ``Completed``, flush, count).

Rows follow the project's schema (``infra/milvus.py`` ``ensure_collection``: INT64 pk, VARCHAR
doc_id/text/source/codec_id, INT32 chunk, FLOAT_VECTOR) with 128-d random float32 vectors and
passage-like texts of about 300 bytes. Each measurement loads a fresh collection. "Countable" is
the end point: a 2.3 server loads (and so searches or ``count(*)``-queries) only an indexed
collection, and building the index costs both paths the same.

Findings that shaped the script (also written to the JSON's notes):

- this server's storage is ``common.storageType: local`` (``localStorage.path`` = <base>/data,
  no MinIO), and its local chunk manager opens import paths as given: an absolute path to a
  file anywhere on the server's machine works; a relative one is taken from the server's
  working directory (its base folder), not from ``localStorage.path`` or a bucket;
- ``RemoteBulkWriter`` needs a MinIO/S3 endpoint, which this server has none of; the REST
  ``bulk_import`` (``/v2/vectordb/jobs/import/create``) exists from Milvus 2.4 (2.3.5: 404);
- pymilvus 3.0.2's ``pymilvus.bulk_writer`` refuses to import without the ``bulk_writer`` extras
  (minio, azure-storage-blob), which LocalBulkWriter does not use; where they are missing,
  placeholder modules (that raise when used) stand in for them in this process only.

The embedded etcd of the server listens on 127.0.0.1:2379/2380 whatever the config says, so only
one such server can run on a machine; the other ports are picked free by the ``milvus`` package.
Each method runs once per size (about 5.5 minutes for the defaults on 2 cores); client and server
share the CPUs, so single upsert timings vary by up to ~1.5x from run to run. JSON files (3x the
Parquet size, slowest to write) are left out unless ``--formats`` names them.

    .venv/bin/python benchmarks/bulk_load.py [--rows 50000 200000] [--threads 1 2 4]
        [--formats parquet numpy] [--no-pyarrow]
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pymilvus
from pymilvus import MilvusClient, connections, utility
from pymilvus.orm.schema import CollectionSchema

from vecpress.infra.milvus import byte_batches
from vecpress.infra.milvus import collection_schema as milvus_schema

RESULTS = Path(__file__).parent / "results"
COLLECTION = "bulk_load_bench"
ALIAS = "bulk_load_bench"  # ORM connection of the bulk-insert calls
DIM = 128
MAX_TEXT = 65_535  # vecpress.infra.settings.MAX_VARCHAR_BYTES
BATCH_BYTES = 8 << 20  # milvus.insert_batch_bytes
CHUNK_BYTES = 128 << 20  # LocalBulkWriter's default chunk: one import file per 128 MiB
COUNT_TIMEOUT_S = 600.0
_VOCABULARY = """the of and to in is that for it as with was on be by this are from or an which at
vector index search query passage document model embedding cluster server storage quantisation
compression recall latency memory batch segment collection shard codec milvus dimension distance
nearest neighbour training sample encoder token sentence language retrieval ranking score result
field schema primary key import upsert"""
WORDS = tuple(_VOCABULARY.split())


def quiet_pymilvus() -> None:
    """ORM calls warn that they go in PyMilvus 3.1; the bulk writer logs every file at INFO."""
    warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")
    logging.getLogger("pymilvus.bulk_writer").setLevel(logging.WARNING)


def import_bulk_writer() -> tuple[Any, Any, Callable[..., Any], str]:
    """``LocalBulkWriter``, ``BulkFileType``, ``bulk_import`` and a note on how they were loaded.

    ``pymilvus.bulk_writer/__init__`` refuses to load unless minio and azure are installed (the
    ``pymilvus[bulk_writer]`` extras), although only RemoteBulkWriter and the Zilliz volume
    helpers use them. Missing ones are replaced, in this process only, by placeholder modules
    whose classes raise when called.
    """
    try:
        from pymilvus.bulk_writer import BulkFileType, LocalBulkWriter, bulk_import
        return LocalBulkWriter, BulkFileType, bulk_import, "pymilvus.bulk_writer imported as is"
    except ModuleNotFoundError as exc:
        reason = str(exc)
    from importlib.util import find_spec

    missing = [root for root in ("minio", "azure") if find_spec(root) is None]
    for name in ("minio", "minio.error", "minio.helpers", "azure", "azure.core",
                 "azure.core.exceptions", "azure.storage", "azure.storage.blob"):
        if name.split(".")[0] in missing:
            sys.modules[name] = _placeholder_module(name)
    from pymilvus.bulk_writer import BulkFileType, LocalBulkWriter, bulk_import
    note = (f"pymilvus.bulk_writer refused to import ({reason}); placeholder modules for "
            f"{', '.join(missing)} let LocalBulkWriter load (RemoteBulkWriter unusable)")
    return LocalBulkWriter, BulkFileType, bulk_import, note


def _placeholder_module(name: str) -> types.ModuleType:
    """A module whose every public attribute is a class that raises when called."""

    def refuse(*_: Any, **__: Any) -> None:
        raise ModuleNotFoundError(f"{name}: placeholder of a missing pymilvus[bulk_writer] extra")

    def attribute(attr: str) -> type:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return type(attr, (Exception,), {"__init__": refuse})

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__path__ = []  # type: ignore[attr-defined]
    module.__getattr__ = attribute  # type: ignore[method-assign]
    return module


def collection_schema() -> CollectionSchema:
    """The schema of ``MilvusStore.ensure_collection`` (infra/milvus.py)."""
    return milvus_schema(DIM, "vecpress bulk-load benchmark")


def make_columns(n: int, seed: int = 0) -> dict[str, Any]:
    """n passages: ~300-byte texts of common words, 4 chunks per document, random vectors."""
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    picks = words[rng.integers(0, len(words), size=(n, 60))]
    texts = []
    for row in picks:
        text = " ".join(row.tolist())
        texts.append(text[:text.rfind(" ", 0, 300)].capitalize() + ".")
    return {
        "pk": np.arange(n, dtype=np.int64),
        "doc_id": [f"doc-{i // 4:08d}" for i in range(n)],
        "chunk": (np.arange(n) % 4).astype(np.int32),
        "text": texts,
        "source": [f"corpus/part-{i % 64:03d}.jsonl" for i in range(n)],
        "codec_id": ["pca128-ivfpq16"] * n,
        "vector": rng.standard_normal((n, DIM), dtype=np.float32),
    }


def make_rows(cols: dict[str, Any]) -> list[dict[str, Any]]:
    """Row dicts as ``tasks/collection/loading.shard_rows`` yields them (vector: a float32 row)."""
    pks, chunks, vectors = cols["pk"].tolist(), cols["chunk"].tolist(), cols["vector"]
    return [{"pk": pks[i], "doc_id": cols["doc_id"][i], "chunk": chunks[i], "text": cols["text"][i],
             "source": cols["source"][i], "codec_id": cols["codec_id"][i], "vector": vectors[i]}
            for i in range(len(pks))]


def fresh_collection(client: MilvusClient) -> None:
    if client.has_collection(COLLECTION):
        client.drop_collection(COLLECTION)
    client.create_collection(COLLECTION, schema=collection_schema(), consistency_level="Strong")


def flush_and_count(client: MilvusClient, n: int) -> float:
    """Flush, then wait until the collection's stats count ``n`` rows; the seconds it took."""
    start = time.perf_counter()
    client.flush(COLLECTION)
    while int(client.get_collection_stats(COLLECTION)["row_count"]) < n:
        if time.perf_counter() - start > COUNT_TIMEOUT_S:
            raise TimeoutError(f"{COLLECTION} did not count {n} rows in {COUNT_TIMEOUT_S:.0f} s")
        time.sleep(0.05)
    return time.perf_counter() - start


def run_upserts(uri: str, client: MilvusClient, rows: list[dict[str, Any]], threads: int
                ) -> dict[str, Any]:
    """``threads`` connections upsert the 8 MiB batches round-robin; then flush and count."""
    fresh_collection(client)
    batches = list(byte_batches(rows, BATCH_BYTES))
    clients = [MilvusClient(uri=uri, dedicated=True) for _ in range(threads)]

    def work(k: int) -> int:
        done = 0
        for batch in batches[k::threads]:
            clients[k].upsert(COLLECTION, batch)
            done += len(batch)
        return done

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            written = sum(pool.map(work, range(threads)))
        upsert_s = time.perf_counter() - start
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


def write_with_bulk_writer(writer_cls: Any, file_type: Any, rows: list[dict[str, Any]], folder: Path
                           ) -> list[list[str]]:
    """LocalBulkWriter files (a new file per 128 MiB buffered); the file sets to import."""
    folder.parent.mkdir(parents=True, exist_ok=True)  # the writer makes only the last level
    writer = writer_cls(schema=collection_schema(), local_path=str(folder), file_type=file_type,
                        chunk_size=CHUNK_BYTES)
    for row in rows:
        writer.append_row(row)
    writer.commit()
    return [list(files) for files in writer.batch_files]


def write_with_pyarrow(cols: dict[str, Any], folder: Path) -> list[list[str]]:
    """Parquet as LocalBulkWriter writes it (vector: list<float>), straight from the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(cols["pk"])
    row_bytes = 8 + 4 + 4 * DIM + sum(len(cols[k][0]) for k in ("doc_id", "text", "source", "codec_id"))
    per_file = max(1, CHUNK_BYTES // row_bytes)
    files = []
    for k, start in enumerate(range(0, n, per_file)):
        end = min(n, start + per_file)
        vectors = np.ascontiguousarray(cols["vector"][start:end]).reshape(-1)
        offsets = np.arange(0, (end - start + 1) * DIM, DIM, dtype=np.int32)
        table = pa.table({
            "pk": cols["pk"][start:end], "doc_id": cols["doc_id"][start:end],
            "chunk": cols["chunk"][start:end], "text": cols["text"][start:end],
            "source": cols["source"][start:end], "codec_id": cols["codec_id"][start:end],
            "vector": pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors)),
        })
        path = folder / f"{k + 1}.parquet"
        pq.write_table(table, path)
        files.append([str(path)])
    return files


def wait_tasks(tasks: list[int]) -> dict[int, Any]:
    """Poll bulk-insert tasks until each is ``Completed`` or ``Failed``; their final states."""
    start = time.perf_counter()
    final: dict[int, Any] = {}
    while len(final) < len(tasks):
        for task in tasks:
            if task not in final:
                state = utility.get_bulk_insert_state(task, using=ALIAS)
                if state.state_name in ("Completed", "Failed"):
                    final[task] = state
        if time.perf_counter() - start > COUNT_TIMEOUT_S:
            raise TimeoutError(f"bulk insert tasks {sorted(set(tasks) - set(final))} still running")
        if len(final) < len(tasks):
            time.sleep(0.1)
    return final


def import_files(client: MilvusClient, batches: list[list[str]], n: int) -> dict[str, Any]:
    """Submit every file set with ``utility.do_bulk_insert``, wait for each task, flush, count."""
    start = time.perf_counter()
    tasks = [utility.do_bulk_insert(COLLECTION, files=files, using=ALIAS) for files in batches]
    states = wait_tasks(tasks)
    failed = [f"task {t}: {s.failed_reason}" for t, s in states.items() if s.state_name == "Failed"]
    if failed:
        raise RuntimeError("bulk insert failed: " + "; ".join(failed))
    import_s = time.perf_counter() - start
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
        start = time.perf_counter()
        batches = write(folder)
        write_s = time.perf_counter() - start
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


def crossover(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per bulk method against the fastest upsert at each size: where bulk wins, and where lines
    through the smallest and largest size (seconds = fixed + per-row cost) cross."""
    sizes = sorted({r["rows"] for r in results})
    upsert = {n: min((r for r in results if r["rows"] == n and r["method"].startswith("upsert")),
                     key=lambda r: r["total_s"], default=None) for n in sizes}
    out: dict[str, Any] = {"best_upsert": {n: u and {"method": u["method"], "total_s": u["total_s"]}
                                           for n, u in upsert.items()}}

    def line(points: dict[int, float]) -> tuple[float, float]:
        lo, hi = min(points), max(points)
        slope = (points[hi] - points[lo]) / (hi - lo)
        return points[lo] - slope * lo, slope

    for method in dict.fromkeys(r["method"] for r in results if r["method"].startswith("bulk")):
        bulk = {r["rows"]: r["total_s"] for r in results if r["method"] == method}
        both = [n for n in sizes if n in bulk and upsert[n] is not None]
        entry: dict[str, Any] = {
            "speedup_vs_best_upsert": {n: round(upsert[n]["total_s"] / bulk[n], 2) for n in both},
            "faster_at": [n for n in both if bulk[n] < upsert[n]["total_s"]]}
        if len(both) >= 2:
            b0, b1 = line({n: bulk[n] for n in both})
            u0, u1 = line({n: upsert[n]["total_s"] for n in both})
            entry |= {"fixed_s": round(b0, 2), "us_per_row": round(b1 * 1e6, 1),
                      "upsert_fixed_s": round(u0, 2), "upsert_us_per_row": round(u1 * 1e6, 1)}
            # bulk faster above crossover_rows (0: at any size); None: it costs more per row
            entry["crossover_rows"] = max(0, round((b0 - u0) / (u1 - b1))) if b1 < u1 else None
        out[method] = entry
    return out


def measure_size(n: int, uri: str, client: MilvusClient, args: argparse.Namespace, writer_cls: Any,
                 file_type: Any, work: Path) -> list[dict[str, Any]]:
    """Every method at n rows, each into a fresh collection; a failed method is recorded, not raised."""
    cols = make_columns(n)
    rows = make_rows(cols)
    plan: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        (f"upsert x{t}", partial(run_upserts, uri, client, rows, t)) for t in args.threads]
    for fmt in args.formats:
        label = f"bulk {fmt} (BulkWriter)"
        write = partial(write_with_bulk_writer, writer_cls, getattr(file_type, fmt.upper()), rows)
        plan.append((label, partial(run_bulk, client, label, write, n, work)))
    if not args.no_pyarrow:
        label = "bulk parquet (pyarrow)"
        plan.append((label, partial(run_bulk, client, label, partial(write_with_pyarrow, cols), n, work)))
    results = []
    for label, measure in plan:
        try:
            result = {"rows": n} | measure()
        except Exception as exc:  # a failed method is a finding, not the end of the run
            result = {"rows": n, "method": label, "error": f"{type(exc).__name__}: {exc}"}
        results.append(result)
        print_table([result], header=False)
    return results


def etcd_ports_free() -> bool:
    """The embedded etcd binds 127.0.0.1:2379 and :2380 whatever milvus.yaml says."""
    for port in (2379, 2380):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as etcd (Go) binds: TIME_WAIT ok
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "pymilvus": pymilvus.__version__,
            "milvus_package": version("milvus"), "numpy": np.__version__, "pyarrow": pa.__version__}


def print_table(results: list[dict[str, Any]], header: bool = True) -> None:
    """write: bulk files; load: upsert calls or import tasks; count: flush until counted."""
    if header:
        head = (f"{'rows':>8} {'method':<24} {'write s':>8} {'load s':>8} {'count s':>8} "
                f"{'total s':>8} {'rows/s':>8}")
        print(head)
        print("-" * len(head))
    for r in results:
        if "error" in r:
            print(f"{r['rows']:>8} {r['method']:<24} failed: {r['error'][:70]}")
            continue
        load = r.get("upsert_s", r.get("import_s"))
        write = f"{r['write_s']:>8.2f}" if "write_s" in r else f"{'-':>8}"
        print(f"{r['rows']:>8} {r['method']:<24} {write} {load:>8.2f} {r['flush_count_s']:>8.2f} "
              f"{r['total_s']:>8.2f} {r['rows_per_s']:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--formats", nargs="*", choices=["parquet", "numpy", "json"],
                        default=["parquet", "numpy"], help="LocalBulkWriter file types imported")
    parser.add_argument("--no-pyarrow", action="store_true",
                        help="skip the Parquet files written by pyarrow straight from the arrays")
    parser.add_argument("--out", type=Path, default=RESULTS / "bulk_load_server.json")
    args = parser.parse_args()
    quiet_pymilvus()
    writer_cls, file_type, bulk_import, import_note = import_bulk_writer()
    if not etcd_ports_free():
        sys.exit("127.0.0.1:2379/2380 are taken (another Milvus server's embedded etcd?): "
                 "this server's etcd cannot start")

    from milvus import default_server as server

    work = Path(tempfile.mkdtemp(prefix="vecpress-bulk-load-"))
    results: list[dict[str, Any]] = []
    notes = [import_note]

    def stop_on_signal(signum: int, _: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that stops the server

    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        server.set_base_dir(str(work / "milvus"))
        start = time.perf_counter()
        server.start()
        start_s = time.perf_counter() - start
        uri = f"http://127.0.0.1:{server.listen_port}"
        client = MilvusClient(uri=uri, dedicated=True)
        connections.connect(alias=ALIAS, uri=uri)
        server_version = client.get_server_version()
        print(f"Milvus {server_version} on {uri} (started in {start_s:.1f} s), base {work / 'milvus'}")
        print_table([])
        for n in args.rows:
            results += measure_size(n, uri, client, args, writer_cls, file_type, work)
        storage = Path(server.config.get("local_storage_dir"))
        server_cwd = Path(server.config.base_data_dir)
        config = (server_cwd / "configs" / "milvus.yaml").read_text()
        storage_type = re.search(r"^\s*storageType:\s*(\S+)", config, re.M)
        paths = probe_paths(client, storage, server_cwd)
        rest = probe_rest_import(bulk_import, uri, str(storage / "none.parquet"))
        client.drop_collection(COLLECTION)
        client.close()
        connections.disconnect(ALIAS)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    kind = storage_type.group(1) if storage_type else "?"
    notes += [
        f"server: PyPI milvus standalone {server_version} (embedded etcd, rocksmq, "
        f"common.storageType {kind}, localStorage.path <base>/data, no MinIO); the client and the "
        "server share the machine's CPUs",
        "bulk import that works: pymilvus.bulk_writer.LocalBulkWriter (Parquet/NumPy/JSON) -> "
        "utility.do_bulk_insert(collection, files=[one file set]) -> poll "
        "utility.get_bulk_insert_state(task).state_name until 'Completed'; the server opens the "
        "paths itself, so the files may lie anywhere on its machine, named by absolute path",
        *(f"import path {label}: {outcome}" for label, outcome in paths.items()),
        f"REST bulk_import (pymilvus.bulk_writer.bulk_import) on this server: {rest}",
        "RemoteBulkWriter not measured: it uploads to MinIO/S3, which this server does not use",
        "end point: flush + get_collection_stats row_count == rows (a 2.3 server loads only an "
        "indexed collection; the index build costs both paths alike and is left out)",
        f"upsert batches: {BATCH_BYTES >> 20} MiB by infra/milvus.byte_batches' estimate "
        "(vector nbytes + len(str(field))); bulk files: a new file per "
        f"{CHUNK_BYTES >> 20} MiB, one import task per file (set)",
    ]
    summary = crossover([r for r in results if "error" not in r])
    report = {"benchmark": "bulk_load_server", "machine": machine(), "server_version": server_version,
              "server_start_s": round(start_s, 1), "dim": DIM, "rows": args.rows,
              "threads": args.threads, "results": results, "summary": summary,
              "import_paths": paths, "rest_bulk_import": rest, "notes": notes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print()
    print_table(results)
    print(json.dumps(summary, indent=2, default=str))
    for note in notes:
        print(f"- {note}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
