"""Milvus Lite served in this process: one engine per data directory, shared by its stores.

Milvus Lite 3 is a pure-Python engine in the calling process. pymilvus reaches it through a gRPC
server on a local port, in the same process, so every row of an upsert is turned into protobuf
columns, sent, parsed back into the same dicts and only then handed to the engine, all under the
one GIL. Upserts made here go to the engine itself (``LiteEngine.upsert``): 37.8 µs a row against
58.5 for pymilvus's column-wise request (``benchmarks/upsert_columns.py``, 40,000 rows). Everything
else (schema, indexes, search, queries) still goes through pymilvus, to the same engine: one set of
data, one file lock, the same consistency.

The engine is started here rather than by pymilvus's ``server_manager`` so that this module owns
the handle; pymilvus connects to the port it serves.
"""

from __future__ import annotations

import atexit
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class LiteRefusal(ValueError):
    """Milvus Lite refused a row for what it holds (a VARCHAR over its max_length, a wrong dim)."""


@dataclass
class LiteEngine:
    """One data directory's engine, its gRPC server, and how many stores of this process use it."""

    path: str
    server: Any
    db: Any
    port: int
    users: int = 0

    @property
    def uri(self) -> str:
        """What pymilvus connects to."""
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

    Raises ``milvus_lite``'s ``DataDirLockedError`` when another process holds the file.
    """
    key = _key(uri)
    with _LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            from milvus_lite.adapter.grpc.server import start_server_in_thread

            server, db, port = start_server_in_thread(data_dir=key, host="127.0.0.1", port=0)
            engine = _ENGINES[key] = LiteEngine(key, server, db, port)
            log.debug("Milvus Lite engine for %s serves port %d", key, port)
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
