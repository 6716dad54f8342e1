"""Milvus Lite in this process: one engine per data directory, shared by its stores.

Milvus Lite 3 is a pure-Python engine in the calling process. pymilvus reaches it through a gRPC
server on a local port of that same process, so every row of an upsert was turned into protobuf
columns, sent, parsed back into the same dicts and only then handed to the engine, all under the
one GIL. Here the engine is called directly wherever that is the hot or the first path:

- upserts (``LiteEngine.upsert``): 37.8 µs a row against 58.5 for pymilvus's column-wise request
  (``benchmarks/upsert_columns.py``, 40,000 rows);
- the search path's reads (``search``, ``get``, ``query``, ``count``, ``fields``): a search command
  then imports neither pymilvus (0.45 s with pandas) nor gRPC, and starts no server.

Schema, index and delete calls still go through pymilvus, to the same engine: one set of data,
one file lock, the same consistency. The gRPC server pymilvus connects to starts on the first such
call (``LiteEngine.uri``).
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from vecpress.infra import lite_arrow, lite_count, lite_lists, lite_recovery

log = logging.getLogger(__name__)


class LiteRefusal(ValueError):
    """Milvus Lite refused a row for what it holds (a VARCHAR over its max_length, a wrong dim)."""


class LiteError(Exception):
    """A read the Lite engine failed (a malformed filter, a collection dropped meanwhile), with
    its reason in ``message`` as a pymilvus ``MilvusException`` carries it; like that one, not a
    ``RuntimeError``, which the CLI reports as a configuration error (exit 2, not 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# The largest gRPC message the engine's server takes and sends, as Milvus Standalone's.
_MESSAGE_BYTES = 256 * 1024 * 1024
# pymilvus pings every 10 s, also with no call under way. gRPC's default server policy answers an
# idle connection's pings with a GOAWAY (too_many_pings), which printed two error lines into a long
# Lite ingest at its next call (after ~100 s idle); the in-process server accepts them instead.
_KEEPALIVE_PINGS = [("grpc.keepalive_permit_without_calls", 1),
                    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                    ("grpc.http2.max_ping_strikes", 0)]


@dataclass
class LiteEngine:
    """One data directory's engine, its gRPC server once pymilvus needs it, and how many stores
    of this process use it."""

    path: str
    db: Any
    users: int = 0
    server: Any = None
    port: int = 0
    _serving: threading.Lock = field(default_factory=threading.Lock)

    @property
    def uri(self) -> str:
        """What pymilvus connects to; the server starts on the first call."""
        with self._serving:
            if self.server is None:
                self.server, self.port = _serve(self.db)
                log.debug("Milvus Lite engine for %s serves port %d", self.path, self.port)
        return f"http://127.0.0.1:{self.port}"

    def upsert(self, collection: str, rows: list[dict[str, Any]], json_field: str,
               vector_field: str) -> None:
        """Upsert ``rows`` into the engine's ``collection`` as pymilvus would have delivered
        them: the vector as a list of floats and the JSON field (JSON text in a row) parsed.

        Raises ``LiteRefusal`` when the engine refuses the rows' data; it validates every row
        before writing any, so a refused batch leaves nothing behind.
        """
        from milvus_lite.exceptions import SchemaValidationError

        records = [row | {vector_field: np.asarray(row[vector_field], np.float32).tolist(),
                          json_field: _json_value(row.get(json_field))} for row in rows]
        try:
            self.db.get_collection(collection).upsert(records)
        except SchemaValidationError as exc:
            raise LiteRefusal(str(exc)) from exc

    def insert_table(self, collection: str, table: pa.Table) -> np.ndarray:
        """Write ``table``'s rows (the collection's fields as columns) into the engine in column
        operations (``infra/lite_arrow.py``). Returns the positions of the rows it did not write:
        those Lite would refuse, or all where that path does not apply, for ``upsert``."""
        return lite_arrow.insert_table(self.db.get_collection(collection), table)

    def create_index(self, collection: str, field: str, params: dict[str, Any]) -> None:
        """Record an index on ``field`` (``index_type``, ``metric_type``, ``params``), which the
        engine builds on ``load``. Called directly: through pymilvus, ``create_index`` sleeps
        0.5 s before its first check on an index that Lite has nothing to build yet."""
        with _failing():
            self.db.get_collection(collection).create_index(field, params)

    # The search path's reads. Each answers as pymilvus does over gRPC (the same engine calls the
    # server makes), and raises ``LiteError`` where pymilvus would raise a ``MilvusException``.

    def has_collection(self, name: str) -> bool:
        return bool(self.db.has_collection(name))

    def load(self, name: str) -> None:
        with _failing():
            self.db.get_collection(name).load()

    def fields(self, name: str) -> list[dict[str, Any]]:
        """The collection's fields as ``describe_collection`` lists them: name, type (its name,
        e.g. "VARCHAR") and whether it is the partition key."""
        with _failing():
            schema = self.db.get_collection(name).schema
        return [{"name": f.name, "type": f.dtype.name,
                 "is_partition_key": bool(getattr(f, "is_partition_key", False))}
                for f in schema.fields]

    def search(self, name: str, vectors: Any, limit: int, params: dict[str, Any],
               expression: str, metric: str, vector_field: str) -> list[list[tuple[int, float]]]:
        """(pk, distance) of the ``limit`` nearest rows for each vector, as Milvus reports them
        (a float32 distance, as gRPC carries it)."""
        with _failing():
            collection = self.db.get_collection(name)
            found = collection.search(
                [np.asarray(v, np.float32).tolist() for v in vectors], top_k=limit,
                metric_type=collection.resolve_search_metric(vector_field, metric),
                expr=expression or None, output_fields=[], anns_field=vector_field,
                search_params=params)
        return [[(int(h["id"]), float(np.float32(h["distance"]))) for h in hits] for hits in found]

    def get(self, name: str, pks: list[int], fields: list[str], json_field: str
            ) -> list[dict[str, Any]]:
        """The rows of these primary keys (absent ones left out), the JSON field parsed."""
        with _failing():
            rows = self.db.get_collection(name).get(pks, output_fields=fields)
        return [_parsed(row, json_field) for row in rows]

    def query(self, name: str, expression: str, fields: list[str], json_field: str,
              limit: int | None = None) -> list[dict[str, Any]]:
        """The rows matching ``expression`` ("": any), at most ``limit``, the JSON field parsed."""
        with _failing():
            rows = self.db.get_collection(name).query(expression or None, output_fields=fields,
                                                      limit=limit)
        return [_parsed(row, json_field) for row in rows]

    def count(self, name: str, expression: str, pk_field: str) -> int:
        """Rows matching ``expression`` ("": every row): the engine's mask of them, counted
        (``lite_count``), or else the keys of every matching row (the gRPC server fetches each
        matching row whole)."""
        with _failing():
            collection = self.db.get_collection(name)
            if not expression:
                return int(collection.num_entities)
            counted = lite_count.count_matching(collection, expression)
            if counted is not None:
                return counted
            return len(collection.query(expression, output_fields=[pk_field]))

    def loaded_collection(self, name: str) -> Any:
        """The engine's collection ``name``, loaded (what ``infra.milvus_sizes`` measures)."""
        with _failing():
            collection = self.db.get_collection(name)
            collection.load()
        return collection


@contextmanager
def _failing() -> Iterator[None]:
    """The engine's failures as ``LiteError``, as its gRPC server reports them to pymilvus: its
    own errors with their message, any other (an ``AssertionError`` for a query vector of the
    wrong width) as an unexpected one."""
    from milvus_lite.exceptions import MilvusLiteError

    try:
        yield
    except MilvusLiteError as exc:
        raise LiteError(str(exc)) from exc
    except Exception as exc:
        raise LiteError(f"unexpected {type(exc).__name__} in Milvus Lite: {exc}") from exc


def _parsed(row: dict[str, Any], json_field: str) -> dict[str, Any]:
    """A row with its JSON field as a value, as pymilvus hands it over (the engine keeps text)."""
    if json_field in row:
        row[json_field] = _json_value(row[json_field])
    return row


def _serve(db: Any) -> tuple[Any, int]:
    """A gRPC server for ``db`` on a free local port, as ``milvus_lite``'s own
    ``start_server_in_thread`` builds one, for the engine already open."""
    from concurrent import futures

    import grpc
    from milvus_lite.adapter.grpc.servicer import MilvusServicer
    from pymilvus.grpc_gen import milvus_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10), options=[
        ("grpc.max_receive_message_length", _MESSAGE_BYTES),
        ("grpc.max_send_message_length", _MESSAGE_BYTES), *_KEEPALIVE_PINGS])
    milvus_pb2_grpc.add_MilvusServiceServicer_to_server(MilvusServicer(db), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    if threading.excepthook is not _quiet_at_exit:
        global _excepthook
        _excepthook, threading.excepthook = threading.excepthook, _quiet_at_exit
    return server, port


_excepthook = threading.excepthook


def _quiet_at_exit(args: threading.ExceptHookArgs) -> None:
    """No traceback when the server's thread meets a call that arrives as the process exits.

    Python's exit shuts ``concurrent.futures``' pools before ``atexit`` stops the server, so a
    call still arriving then (a thread of an interrupted ingest) cannot be handed to the server's
    pool, and gRPC's serving thread died with "cannot schedule new futures after shutdown": a
    traceback under the one line a Ctrl-C prints (a red CI run). The process is exiting and the
    call goes unanswered either way; stopping the server earlier instead sent such a caller into
    pymilvus's connection recovery, which held the exit ~85 s. Every other exception is
    reported as before."""
    if (args.exc_type is RuntimeError and "cannot schedule new futures" in str(args.exc_value)
            and args.thread is not None and args.thread.name.endswith("(_serve)")):
        return
    _excepthook(args)


def _json_value(value: Any) -> Any:
    """A JSON field's value as the engine takes it: JSON text parsed, None as {} (Milvus's JSON
    field takes no null; rows made without metadata have none)."""
    if value is None or value == "":
        return {}
    return json.loads(value) if isinstance(value, str | bytes) else value


# The Lite files this process has open: one engine per file serves every store of it (``vecpress
# api`` serving several collections of one file) and stops when the last of them closes.
_ENGINES: dict[str, LiteEngine] = {}
_LOCK = threading.Lock()


def _key(uri: str) -> str:
    return str(Path(uri).expanduser().resolve())


def open_engine(uri: str) -> LiteEngine:
    """The engine of the Lite file ``uri``, started on first use; ``release`` once per call.

    Raises ``milvus_lite``'s ``DataDirLockedError`` when another process holds the file. Logs
    that a flush killed half-way left behind are removed first (``lite_recovery``).
    """
    key = _key(uri)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            from milvus_lite.db import MilvusLite

            lite_arrow.flush_in_columns()
            lite_lists.quiet_small_segments()
            lite_recovery.drop_persisted_logs(key)
            engine = _ENGINES[key] = LiteEngine(key, MilvusLite(key))
        engine.users += 1
        return engine


def release(uri: str) -> None:
    """One user fewer; the last one stops the server and closes the engine, which releases the
    file lock (another process, a search after an ingest, can then open the file)."""
    key = _key(uri)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            return
        engine.users -= 1
        if engine.users > 0:
            return
        del _ENGINES[key]
    _stop(engine)


def open_here(uri: str) -> bool:
    """True when this process already serves the Milvus Lite file ``uri`` (its lock is ours)."""
    return _key(uri) in _ENGINES


def _stop(engine: LiteEngine) -> None:
    try:
        if engine.server is not None:
            engine.server.stop(grace=2)
    finally:
        engine.db.close()


@atexit.register
def _stop_all() -> None:
    """An engine left open at exit still persists its memtable and frees the lock."""
    with _LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for engine in engines:
        try:
            _stop(engine)
        except Exception:  # exiting: the WAL recovers anything not persisted
            log.warning("could not close the Milvus Lite engine of %s at exit", engine.path)
