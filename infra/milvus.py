"""Milvus access: one collection schema, byte-bounded upserts with retries, index and search.

Milvus Lite (a local ``.db`` file) is the embedded default; an ``http://`` URI reaches a Milvus
server or cluster. Lite has no IVF_PQ, so ``index_type=auto`` picks IVF_SQ8 there (8-bit scalar
quantisation, the most compact index Lite offers) and IVF_PQ with the codec's M/nbits on a server.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import MilvusException

from vecpress.infra import lite_engine
from vecpress.infra.index_plan import IndexPlan
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.milvus_client import RetryingClient, is_refusal, retry_policy
from vecpress.infra.milvus_fields import (
    METADATA,
    VECTOR,
    as_columns,
    byte_batches,
    collection_schema,
    partition_key,
    scalar_index_type,
    typed_fields,
)
from vecpress.infra.settings import MilvusSettings

OUTPUT_FIELDS = ["doc_id", "chunk", "text", "source"]
FETCH_BATCH = 256  # rows per query: texts of ≤ 64 KiB keep a reply under gRPC's 64 MiB
MATCH_BATCH = 2048  # keys per membership query (keys only come back; ~40 KB of expression)
@dataclass(frozen=True)
class RefusedRow:
    """A row Milvus would not store, with Milvus's own reason."""

    row: dict[str, Any]
    reason: str


class MilvusSchemaError(RuntimeError):
    """An existing collection does not fit what this run would write."""


def _typed(fields: Mapping[str, str], key: str | None = None) -> str:
    named = ", ".join(f"{k}:{v}" for k, v in fields.items()) or "none"
    return named + (f" (partition key {key})" if key else "")


def lite_open_here(uri: str) -> bool:
    """True when this process already serves the Milvus Lite file ``uri`` (its lock is ours)."""
    return lite_engine.open_here(uri)


def _open_lite(settings: MilvusSettings) -> lite_engine.LiteEngine:
    """The Lite file's engine. A file another process holds is waited for as a server that does
    not answer is (``milvus.retry_s``), then fails as the ``MilvusException`` pymilvus raised."""
    from milvus_lite.exceptions import DataDirLockedError
    from pymilvus.exceptions import ConnectionConfigException

    def attempt() -> lite_engine.LiteEngine:
        try:
            return lite_engine.open_engine(settings.uri)
        except DataDirLockedError as exc:
            raise ConnectionConfigException(message=f"Open local milvus failed: {exc}") from exc

    return retry_policy(settings.retry_s)(attempt)()


class MilvusStore:
    """Thin, typed wrapper over ``MilvusClient`` with the pipeline's schema and policies."""

    def __init__(self, settings: MilvusSettings) -> None:
        self.settings = settings
        uri = settings.uri
        if settings.is_lite:
            # Milvus Lite's in-process gRPC server logs a traceback for every RPC it does not
            # implement (pymilvus probes AllocTimestamp on upsert); the call itself succeeds.
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
            Path(uri).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
            self._lite: lite_engine.LiteEngine | None = _open_lite(settings)
            uri = self._lite.uri
        else:
            self._lite = None
        try:
            self.client = RetryingClient(uri, settings.token.get_secret_value(), settings.retry_s)
        except BaseException:
            if self._lite is not None:
                lite_engine.release(settings.uri)
            raise
        self._schemas: dict[str, dict[str, Any]] = {}
        self._server_version: str | None = None

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop its in-process server.

        The Lite server holds the .db file lock until stopped, and another process (a search
        after an ingest, say) cannot open the file before that.
        """
        self.client.close()
        if self._lite is not None:
            self._lite = None
            lite_engine.release(self.settings.uri)  # the last store of the file stops its engine

    def ensure_collection(self, name: str, dim: int, codec_id: str,
                          metadata: MetadataSettings | None = None) -> None:
        """Create the collection (with ``metadata``'s typed fields and their scalar indexes), or
        check that the existing one has the same vector space and, when ``metadata`` is given,
        the same typed fields."""
        if self.client.has_collection(name):
            # Described afresh (the check is the point) and kept for the upserts (``_schema``).
            self._schemas[name] = self.client.describe_collection(name)
            vector = next(f for f in self._schemas[name]["fields"] if f["name"] == VECTOR)
            if int(vector["params"]["dim"]) != dim:
                raise MilvusSchemaError(
                    f"collection '{name}' stores {vector['params']['dim']}-d vectors but the codec "
                    f"produces {dim}-d; use another --collection or --recreate"
                )
            have = (typed_fields(self._schemas[name]), partition_key(self._schemas[name]))
            if metadata is not None and have != (metadata.fields, metadata.partition_key):
                raise MilvusSchemaError(
                    f"collection '{name}' has the typed fields {_typed(*have)} but metadata.fields "
                    f"(--typed-fields, --partition-key) declares "
                    f"{_typed(metadata.fields, metadata.partition_key)}; give the same, or "
                    "rebuild it with them: vecpress ingest --recreate, or vecpress reindex")
            return
        if metadata is not None and metadata.partition_key and self.settings.is_lite:
            raise MilvusSchemaError(
                f"Milvus Lite has no partitions: the partition key '{metadata.partition_key}' "
                "needs a Milvus server (--milvus-uri http://HOST:19530); leave --partition-key "
                "out on Lite")
        schema = collection_schema(dim, f"vecpress codec {codec_id}", metadata)
        self._schemas.pop(name, None)
        self.client.create_collection(name, schema=schema, consistency_level="Strong")
        if metadata is not None and metadata.scalar_index:
            self._index_typed_fields(name, metadata.fields)

    def _index_typed_fields(self, name: str, fields: Mapping[str, str]) -> None:
        """A scalar index on each typed field the backend can index (``scalar_index_type``)."""
        for field, kind in fields.items():
            index_type = scalar_index_type(kind, self.settings.is_lite)
            if index_type is None:
                continue
            params = self.client.prepare_index_params()
            params.add_index(field, index_type=index_type, index_name=field)
            self.client.create_index(name, params)

    def typed_fields(self, name: str) -> dict[str, str]:
        """The collection's typed metadata fields: name -> varchar | int64 | double | bool."""
        return typed_fields(self._schema(name))

    def resolve_typed(self, declared: MetadataSettings, *collections: str) -> MetadataSettings:
        """``declared`` where its caller set ``metadata.fields``; else the typed fields of the
        first of ``collections`` that exists (the build being written, then the one serving),
        so that a run without ``--typed-fields`` keeps them, in a new build too."""
        if "fields" in declared.model_fields_set:
            return declared
        for name in collections:
            if name and self.client.has_collection(name):
                return declared.model_copy(update={
                    "fields": self.typed_fields(name),
                    "partition_key": partition_key(self._schema(name))})
        return declared

    def load(self, name: str) -> None:
        """Make the collection searchable (a reopened Milvus Lite file starts released)."""
        self.client.load_collection(name)

    def _schema(self, name: str) -> dict[str, Any]:
        """The collection's schema as pymilvus describes it, read once per collection (dropping
        or creating it through this store forgets it)."""
        if name not in self._schemas:
            self._schemas[name] = self.client.describe_collection(name)
        return self._schemas[name]

    def drop(self, name: str) -> None:
        self._schemas.pop(name, None)
        if self.client.has_collection(name):
            self.client.drop_collection(name)

    def point_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` name collection ``name`` on a server (Milvus Lite has no aliases)."""
        if self.settings.is_lite:
            return
        if alias in self.client.list_aliases(name).get("aliases", []):
            return
        try:
            self.client.describe_alias(alias)
        except MilvusException:
            if self.client.has_collection(alias):
                raise MilvusSchemaError(
                    f"a collection named '{alias}' (not an alias) exists on {self.settings.uri}, "
                    "written by an earlier vecpress; drop it or use another --collection") from None
            self.client.create_alias(name, alias)
            return
        self.client.alter_alias(name, alias)

    def upsert(self, name: str, rows: Sequence[dict[str, Any]],
               refused: list[RefusedRow] | None = None) -> int:
        """Upsert rows in batches of about ``insert_batch_bytes``; retry transient failures.

        With ``refused``, a row Milvus refuses goes there with the reason while the rest of its
        batch loads (the batch is halved until the refused rows stand alone); without, a refusal
        raises. Returns the rows written.
        """
        written = 0
        for batch in byte_batches(rows, self.settings.insert_batch_bytes):
            written += self._upsert_batch(name, batch, refused)
        return written

    def _upsert_batch(self, name: str, batch: list[dict[str, Any]],
                      refused: list[RefusedRow] | None) -> int:
        try:
            schema = self._schema(name)
            if self._lite is not None:
                self._lite.upsert(name, batch, METADATA, VECTOR)
                return len(batch)
            columns = as_columns(batch, schema["fields"])
            if self._upsert_misroutes(name):
                self.client.replace_columns(name, columns, schema, [row["pk"] for row in batch])
            else:
                self.client.upsert_columns(name, columns, schema)
            return len(batch)
        except (MilvusException, lite_engine.LiteRefusal) as exc:
            if refused is None or not is_refusal(exc):
                raise
            if len(batch) == 1:
                refused.append(RefusedRow(batch[0], str(getattr(exc, "message", exc))))
                return 0
        half = len(batch) // 2
        return (self._upsert_batch(name, batch[:half], refused)
                + self._upsert_batch(name, batch[half:], refused))

    def _upsert_misroutes(self, name: str) -> bool:
        """Milvus 2.3 servers upsert a partition-key collection's rows into partitions their
        searches never read (milvus-io/milvus#30607, fixed by #30772 in 2.4 and #30773 on 2.3 in
        2024-02): on 2.3.5 a filter on the key found 5 of 200 upserted rows, and all 200
        inserted ones. Such collections are written by delete + insert there."""
        if self.settings.is_lite or partition_key(self._schema(name)) is None:
            return False
        if self._server_version is None:
            self._server_version = str(self.client.get_server_version())
        return self._server_version.lstrip("v").startswith("2.3.")

    def delete(self, name: str, pks: Sequence[int], batch: int = 16_384) -> int:
        """Delete rows by primary key (rows of deleted or shrunk inputs); return how many asked."""
        if not pks or not self.client.has_collection(name):
            return 0
        for start in range(0, len(pks), batch):
            ids = [int(pk) for pk in pks[start : start + batch]]
            self.client.delete(name, ids=ids)
        return len(pks)

    def has_index(self, name: str) -> bool:
        return VECTOR in self.client.list_indexes(name)

    def flush(self, name: str) -> None:
        self.client.flush(name)

    def stored_rows(self, name: str) -> int:
        """Rows in the collection's flushed segments, without loading it (a server loads only
        indexed collections); deletes not yet compacted still count: good enough to size an index."""
        return int(self.client.get_collection_stats(name)["row_count"])

    def ensure_index(self, name: str, plan: IndexPlan, rebuild: bool = False) -> dict[str, Any]:
        """Build the vector index ``plan`` describes unless there is one (``rebuild``: replace
        it, for a collection that outgrew it; see ``index_plan.replan``), then load."""
        # Seal what was just written: Milvus Lite searches unflushed rows by brute force, outside
        # the index (and slowly); a server indexes sealed segments.
        self.client.flush(name)
        if VECTOR in self.client.list_indexes(name):
            if not rebuild:
                self.load(name)
                return self.client.describe_index(name, VECTOR)
            self.client.release_collection(name)
            self.client.drop_index(name, VECTOR)
        self.create_index(name, plan)
        self.load(name)
        return self.client.describe_index(name, VECTOR)

    def create_index(self, name: str, plan: IndexPlan) -> None:
        """Create the vector index ``plan`` describes (the collection is not loaded). A server
        then indexes each segment when it is sealed, also those written afterwards."""
        index = self.client.prepare_index_params()
        index.add_index(VECTOR, index_type=plan.index_type, metric_type=plan.metric,
                        params=plan.params)
        self.client.create_index(name, index)

    def search(self, name: str, vectors: np.ndarray | Sequence[Sequence[float]], limit: int,
               nprobe: int = 64, expression: str = "", metric: str = "L2"
               ) -> list[list[tuple[int, float]]]:
        """(primary key, distance) of the ``limit`` nearest rows for each vector (of the rows
        that match the boolean ``expression``, when one is given). Distances are smaller for
        nearer rows whatever the index's ``metric``: an inner product (IP) comes back negated.

        Only keys and distances travel: the texts of the few rows a search keeps are fetched
        afterwards (``rows``), not those of every candidate.
        """
        params = {"metric_type": metric, "params": {"nprobe": nprobe, "ef": max(limit, 64)}}
        found = self.client.search(name, data=list(vectors), limit=limit, search_params=params,
                                   output_fields=[], anns_field=VECTOR, filter=expression,
                                   consistency_level=self.settings.search_consistency)
        sign = -1.0 if metric == "IP" else 1.0
        return [[(int(h["id"] if "id" in h else h["pk"]), sign * float(h["distance"]))
                 for h in hits] for hits in found]

    def rows(self, name: str, pks: Sequence[int], fields: list[str] = OUTPUT_FIELDS,
             where: str = "", batch_size: int = FETCH_BATCH) -> dict[int, dict[str, Any]]:
        """``fields`` of the rows with these primary keys (absent ones are left out; with
        ``where``, also those that do not match that expression)."""
        out: dict[int, dict[str, Any]] = {}
        keys = sorted(set(pks))
        for start in range(0, len(keys), batch_size):
            expression = f"pk in {keys[start:start + batch_size]}"
            # The search path fails at once (RetryingClient says why): the plain client's query.
            for row in self.client.plain.query(
                    name, filter=f"{expression} and ({where})" if where else expression,
                    output_fields=fields, consistency_level=self.settings.search_consistency):
                out[int(row["pk"])] = row
        return out

    def index_info(self, name: str) -> dict[str, Any]:
        """The vector index's type and parameters ({} while there is none)."""
        if VECTOR not in self.client.list_indexes(name):
            return {}
        return self.client.describe_index(name, VECTOR)

    def count(self, name: str) -> int:
        res = self.client.query(name, filter="", output_fields=["count(*)"],
                                consistency_level="Strong")
        return int(res[0]["count(*)"])

    # The search path's filter calls fail at once, as search does (``RetryingClient``): a
    # malformed expression is the caller's to fix, and a retry would hold the search for 90 s.

    def count_matching(self, name: str, expression: str) -> int:
        """Rows that match the boolean ``expression`` ("": every row)."""
        res = self.client.plain.query(name, filter=expression, output_fields=["count(*)"],
                                      consistency_level=self.settings.search_consistency)
        return int(res[0]["count(*)"])

    def pks_where(self, name: str, expression: str, limit: int) -> np.ndarray:
        """Primary keys of at most ``limit`` (≤ 16,384, Milvus's query window) rows that match."""
        found = self.client.plain.query(name, filter=expression, output_fields=["pk"],
                                        limit=limit,
                                        consistency_level=self.settings.search_consistency)
        return np.array(sorted(int(row["pk"]) for row in found), dtype=np.int64)

    def matching(self, name: str, pks: Sequence[int], expression: str) -> set[int]:
        """Those of ``pks`` whose rows match ``expression`` (keys only: larger batches)."""
        return set(self.rows(name, pks, ["pk"], expression, MATCH_BATCH))

    def metadata_keys(self, name: str, rows: int = 1000) -> set[str]:
        """The metadata keys of up to ``rows`` rows: what an error about an unknown key lists."""
        found = self.client.plain.query(name, filter="", output_fields=[METADATA], limit=rows,
                                        consistency_level=self.settings.search_consistency)
        return {str(key) for row in found for key in (row.get(METADATA) or {})}

    def has_field(self, name: str, field: str) -> bool:
        """Whether the collection's schema has ``field`` (collections built by earlier versions
        lack the fields added since: the metadata)."""
        return any(f["name"] == field for f in self._schema(name)["fields"])
