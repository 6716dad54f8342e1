"""Reading a Milvus collection: what a search needs, and nothing that writes.

On Milvus Lite these reads go to the engine in this process (``infra.lite_engine``): a search
imports neither pymilvus nor gRPC and starts no server. On a server they go through pymilvus, the
search path's calls failing at once (``RetryingClient``). ``infra.milvus.MilvusStore`` adds the
writes an ingest makes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecpress.infra import lite_engine, milvus_sizes
from vecpress.infra.milvus_fields import METADATA, VECTOR, typed_fields
from vecpress.infra.settings import MilvusSettings

if TYPE_CHECKING:
    from vecpress.infra.milvus_client import RetryingClient

OUTPUT_FIELDS = ["doc_id", "chunk", "text", "source"]
FETCH_BATCH = 256  # rows per query: texts of ≤ 64 KiB keep a reply under gRPC's 64 MiB
MATCH_BATCH = 2048  # keys per membership query (keys only come back; ~40 KB of expression)


def lite_open_here(uri: str) -> bool:
    """True when this process already serves the Milvus Lite file ``uri`` (its lock is ours)."""
    return lite_engine.open_here(uri)


def _open_lite(settings: MilvusSettings, retry_s: float) -> lite_engine.LiteEngine:
    """The Lite file's engine. A file another process holds is waited for as a server that does
    not answer is (``retry_s``), then fails as the ``MilvusException`` pymilvus raised."""
    from milvus_lite.exceptions import DataDirLockedError

    try:
        return lite_engine.open_engine(settings.uri)
    except DataDirLockedError:
        pass  # another process holds it: waited for below, as for a server that does not answer
    from pymilvus.exceptions import ConnectionConfigException

    from vecpress.infra.milvus_client import retry_policy

    def attempt() -> lite_engine.LiteEngine:
        try:
            return lite_engine.open_engine(settings.uri)
        except DataDirLockedError as exc:
            raise ConnectionConfigException(message=f"Open local milvus failed: {exc}") from exc

    return retry_policy(retry_s)(attempt)()


def is_milvus_error(exc: BaseException | None) -> bool:
    """A failed Milvus call: a pymilvus error (told by its module, so that a caller need not
    import pymilvus to ask) or the Lite engine's ``LiteError``."""
    return exc is not None and (type(exc).__module__.startswith("pymilvus")
                                or isinstance(exc, lite_engine.LiteError))


def milvus_errors(*also: type[Exception]) -> tuple[type[Exception], ...]:
    """What a failed Milvus call raises: pymilvus's ``MilvusException``, or ``LiteError`` from
    the Lite engine's reads (and ``also``). For ``except`` clauses, which evaluate it only when
    something failed: pymilvus is imported then, not on the way."""
    from pymilvus import MilvusException

    return (MilvusException, lite_engine.LiteError, *also)


class MilvusReads:
    """The reads of one Milvus (a Lite file or a server), with the pipeline's schema.

    On Milvus Lite the reads go to the engine itself, and the pymilvus client is made on the
    first call that needs it (``client``)."""

    def __init__(self, settings: MilvusSettings, retry_s: float | None = None) -> None:
        """``retry_s``: how long a Milvus that does not answer is waited for (connecting, and
        every retried call); default ``milvus.retry_s``. A search waits less
        (``search.milvus_wait_s``): it is asked by someone waiting for its answer."""
        self.settings = settings
        self.retry_s = settings.retry_s if retry_s is None else retry_s
        self._lite: lite_engine.LiteEngine | None = None
        self._client: RetryingClient | None = None
        self._making = threading.Lock()
        if settings.is_lite:
            # Milvus Lite's in-process gRPC server logs a traceback for every RPC it does not
            # implement (pymilvus probes AllocTimestamp on upsert); the call itself succeeds.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            Path(settings.uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            self._lite = _open_lite(settings, self.retry_s)
        else:
            self.client  # noqa: B018 - a server is reached (and waited for) at once
        self._schemas: dict[str, dict[str, Any]] = {}

    @property
    def client(self) -> RetryingClient:
        """The pymilvus client (of the engine's gRPC server on Milvus Lite), made once: the
        threads of ``vecpress api`` may ask for it at the same moment."""
        if self._client is None:
            with self._making:
                if self._client is None:
                    from vecpress.infra.milvus_client import RetryingClient

                    uri = self._lite.uri if self._lite is not None else self.settings.uri
                    self._client = RetryingClient(uri, self.settings.token.get_secret_value(),
                                                  self.retry_s)
        return self._client

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop its in-process server.

        The Lite server holds the .db file lock until stopped, and another process (a search
        after an ingest, say) cannot open the file before that.
        """
        if self._client is not None:
            self._client.close()
        if self._lite is not None:
            self._lite = None
            lite_engine.release(self.settings.uri)  # the last store of the file stops its engine

    def has_collection(self, name: str) -> bool:
        if self._lite is not None:
            return self._lite.has_collection(name)
        return bool(self.client.has_collection(name))

    def load(self, name: str) -> None:
        """Make the collection searchable (a reopened Milvus Lite file starts released)."""
        if self._lite is not None:
            self._lite.load(name)
        else:
            self.client.load_collection(name)

    def _schema(self, name: str) -> dict[str, Any]:
        """The collection's schema as pymilvus describes it, read once per collection (dropping
        or creating it through this store forgets it)."""
        if name not in self._schemas:
            self._schemas[name] = ({"fields": self._lite.fields(name)} if self._lite is not None
                                   else self.client.describe_collection(name))
        return self._schemas[name]

    def typed_fields(self, name: str) -> dict[str, str]:
        """The collection's typed metadata fields: name -> varchar | int64 | double | bool."""
        return typed_fields(self._schema(name))

    def has_field(self, name: str, field: str) -> bool:
        """Whether the collection's schema has ``field`` (collections built by earlier versions
        lack the fields added since: the metadata)."""
        return any(f["name"] == field for f in self._schema(name)["fields"])

    def index_info(self, name: str) -> dict[str, Any]:
        """The vector index's type and parameters ({} while there is none)."""
        if VECTOR not in self.client.list_indexes(name):
            return {}
        return self.client.describe_index(name, VECTOR)

    def search(self, name: str, vectors: np.ndarray | Sequence[Sequence[float]], limit: int,
               nprobe: int = 64, expression: str = "", metric: str = "L2"
               ) -> list[list[tuple[int, float]]]:
        """(primary key, distance) of the ``limit`` nearest rows for each vector (of the rows
        that match the boolean ``expression``, when one is given). Distances are smaller for
        nearer rows whatever the index's ``metric``: an inner product (IP) comes back negated.

        Only keys and distances travel: the texts of the few rows a search keeps are fetched
        afterwards (``rows``), not those of every candidate.
        """
        engine = {"nprobe": nprobe, "ef": max(limit, 64)}
        if self._lite is not None:
            found = self._lite.search(name, vectors, limit, engine, expression, metric, VECTOR)
        else:
            params = {"metric_type": metric, "params": engine}
            found = [[(int(h["id"] if "id" in h else h["pk"]), float(h["distance"])) for h in hits]
                     for hits in self.client.search(
                         name, data=list(vectors), limit=limit, search_params=params,
                         output_fields=[], anns_field=VECTOR, filter=expression,
                         consistency_level=self.settings.search_consistency)]
        sign = -1.0 if metric == "IP" else 1.0
        return [[(pk, sign * distance) for pk, distance in hits] for hits in found]

    def rows(self, name: str, pks: Sequence[int], fields: list[str] = OUTPUT_FIELDS,
             where: str = "", batch_size: int = FETCH_BATCH) -> dict[int, dict[str, Any]]:
        """``fields`` of the rows with these primary keys (absent ones are left out; with
        ``where``, also those that do not match that expression)."""
        out: dict[int, dict[str, Any]] = {}
        keys = sorted(set(pks))
        for start in range(0, len(keys), batch_size):
            ask = keys[start:start + batch_size]
            expression = f"pk in {ask} and ({where})" if where else f"pk in {ask}"
            if self._lite is None:  # fails at once (RetryingClient says why): the plain client
                found = self.client.plain.query(
                    name, filter=expression, output_fields=fields,
                    consistency_level=self.settings.search_consistency)
            elif where:
                found = self._lite.query(name, expression, fields, METADATA)
            else:
                found = self._lite.get(name, ask, fields, METADATA)
            out |= {int(row["pk"]): row for row in found}
        return out

    def matching(self, name: str, pks: Sequence[int], expression: str) -> set[int]:
        """Those of ``pks`` whose rows match ``expression`` (keys only: larger batches)."""
        return set(self.rows(name, pks, ["pk"], expression, MATCH_BATCH))

    def count(self, name: str) -> int:
        if self._lite is not None:
            return self._lite.count(name, "", "pk")
        res = self.client.query(name, filter="", output_fields=["count(*)"],
                                consistency_level="Strong")
        return int(res[0]["count(*)"])

    # The search path's filter calls fail at once, as search does (``RetryingClient``): a
    # malformed expression is the caller's to fix, and a retry would hold the search for 90 s.

    def count_matching(self, name: str, expression: str) -> int:
        """Rows that match the boolean ``expression`` ("": every row)."""
        if self._lite is not None:
            return self._lite.count(name, expression, "pk")
        res = self.client.plain.query(name, filter=expression, output_fields=["count(*)"],
                                      consistency_level=self.settings.search_consistency)
        return int(res[0]["count(*)"])

    def pks_where(self, name: str, expression: str, limit: int) -> np.ndarray:
        """Primary keys of at most ``limit`` (≤ 16,384, Milvus's query window) rows that match."""
        found = self._lite.query(name, expression, ["pk"], METADATA, limit) \
            if self._lite is not None else \
            self.client.plain.query(name, filter=expression, output_fields=["pk"], limit=limit,
                                    consistency_level=self.settings.search_consistency)
        return np.array(sorted(int(row["pk"]) for row in found), dtype=np.int64)

    def metadata_keys(self, name: str, rows: int = 1024) -> set[str]:
        """The metadata keys of about ``rows`` rows drawn from the whole collection: what an
        error about an unknown key lists."""
        return {str(key) for found in self.metadata_sample(name, rows) for key in found}

    def metadata_sample(self, name: str, rows: int = 1024) -> list[dict]:
        """The metadata of about ``rows`` rows drawn from the whole collection. Keys are hashes,
        so the rows in 64 narrow key windows, sized to hold ``rows`` in all, are a uniform sample;
        the first rows unfiltered were the first files' only (a corpus whose first files have no
        front matter listed no keys)."""
        total, windows = self.count(name), 64
        where = ""
        if total > rows:
            span = (1 << 63) // windows
            width = max(1, (1 << 63) // total * rows // windows)
            where = " or ".join(f"(pk >= {i * span} and pk < {i * span + width})"
                                for i in range(windows))
        found = self._lite.query(name, where, [METADATA], METADATA, 2 * rows) \
            if self._lite is not None else \
            self.client.plain.query(name, filter=where, output_fields=[METADATA], limit=2 * rows,
                                    consistency_level=self.settings.search_consistency)
        return [row.get(METADATA) or {} for row in found]

    # What a collection costs (``tasks.search.footprint``): the backend's own figures.

    def stored_bytes(self, name: str) -> dict[str, int]:
        """Bytes of collection ``name`` at rest in Milvus, by kind (``infra.milvus_sizes``)."""
        if self._lite is not None:
            return milvus_sizes.lite_stored_bytes(self._lite, name)
        return milvus_sizes.server_stored_bytes(self.client.plain, name)

    def loaded_bytes(self, name: str) -> dict[str, int]:
        """RAM Milvus holds for collection ``name`` while it is loaded (Lite loads it first).
        A server reports none per collection: {}."""
        if self._lite is None:
            return {}
        return milvus_sizes.lite_loaded_bytes(self._lite, name, VECTOR)
