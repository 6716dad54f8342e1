"""Loading speed of a Milvus 2.3.5 server: concurrent upserts against bulk import from files.

vecpress loads a collection with ``MilvusStore.upsert`` (column-wise upsert requests in batches
of about ``milvus.insert_batch_bytes`` = 8 MiB; row-wise ``MilvusClient.upsert`` until 3c10256).
Milvus also offers bulk import: files written on the
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
import json
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from bulk_load_files import (
    CHUNK_BYTES,
    DIM,
    import_bulk_writer,
    make_columns,
    make_rows,
    quiet_pymilvus,
    write_with_bulk_writer,
    write_with_pyarrow,
)
from bulk_load_methods import (
    ALIAS,
    BATCH_BYTES,
    COLLECTION,
    probe_paths,
    probe_rest_import,
    run_bulk,
    run_upserts,
)
from harness import RESULTS, Stopwatch, machine, milvus_server, server_uri, versions, write_results
from pymilvus import MilvusClient, connections


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


def measure_on_server(args: argparse.Namespace, work: Path, writer_cls: Any, file_type: Any,
                      bulk_import: Callable[..., Any]) -> dict[str, Any]:
    """Start the server under ``work``, measure every size and method, probe the import paths and
    the REST import; what was found, the server stopped."""
    clock = Stopwatch()
    with milvus_server(work / "milvus") as server:
        start_s = clock.seconds
        uri = server_uri(server)
        client = MilvusClient(uri=uri, dedicated=True)
        connections.connect(alias=ALIAS, uri=uri)
        server_version = client.get_server_version()
        print(f"Milvus {server_version} on {uri} (started in {start_s:.1f} s), base {work / 'milvus'}")
        print_table([])
        results: list[dict[str, Any]] = []
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
    return {"start_s": start_s, "server_version": server_version, "results": results,
            "storage_type": storage_type.group(1) if storage_type else "?", "paths": paths,
            "rest": rest}


def findings(run: dict[str, Any]) -> list[str]:
    """The notes of the JSON: how this server takes bulk imports, and what was measured how."""
    return [
        f"server: PyPI milvus standalone {run['server_version']} (embedded etcd, rocksmq, "
        f"common.storageType {run['storage_type']}, localStorage.path <base>/data, no MinIO); the "
        "client and the server share the machine's CPUs",
        "bulk import that works: pymilvus.bulk_writer.LocalBulkWriter (Parquet/NumPy/JSON) -> "
        "utility.do_bulk_insert(collection, files=[one file set]) -> poll "
        "utility.get_bulk_insert_state(task).state_name until 'Completed'; the server opens the "
        "paths itself, so the files may lie anywhere on its machine, named by absolute path",
        *(f"import path {label}: {outcome}" for label, outcome in run["paths"].items()),
        f"REST bulk_import (pymilvus.bulk_writer.bulk_import) on this server: {run['rest']}",
        "RemoteBulkWriter not measured: it uploads to MinIO/S3, which this server does not use",
        "end point: flush + get_collection_stats row_count == rows (a 2.3 server loads only an "
        "indexed collection; the index build costs both paths alike and is left out)",
        f"upsert batches: {BATCH_BYTES >> 20} MiB by infra/milvus.byte_batches' estimate "
        "(vector nbytes + len(str(field))); bulk files: a new file per "
        f"{CHUNK_BYTES >> 20} MiB, one import task per file (set)",
    ]


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

    work = Path(tempfile.mkdtemp(prefix="vecpress-bulk-load-"))

    def stop_on_signal(signum: int, _: Any) -> None:
        raise SystemExit(128 + signum)  # unwinds through the finally that stops the server

    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        run = measure_on_server(args, work, writer_cls, file_type, bulk_import)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = run["results"]
    notes = [import_note, *findings(run)]
    summary = crossover([r for r in results if "error" not in r])
    report = {"benchmark": "bulk_load_server",
              "machine": machine("pymilvus", "numpy", "pyarrow", cpus_key="cpu_count") |
              {"milvus_package": versions("milvus")["milvus"]}, "server_version": run["server_version"],
              "server_start_s": round(run["start_s"], 1), "dim": DIM, "rows": args.rows,
              "threads": args.threads, "results": results, "summary": summary,
              "import_paths": run["paths"], "rest_bulk_import": run["rest"], "notes": notes}
    write_results(args.out, report, quiet=True)
    print()
    print_table(results)
    print(json.dumps(summary, indent=2, default=str))
    for note in notes:
        print(f"- {note}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
