"""Milvus access: one collection schema, byte-bounded upserts with retries, index and search.

Milvus Lite (a local ``.db`` file) is the embedded default; an ``http://`` URI reaches a Milvus
server or cluster. Lite has no IVF_PQ, so ``index_type=auto`` picks IVF_SQ8 there (8-bit scalar
quantisation, the most compact index Lite offers) and IVF_PQ with the codec's M/nbits on a server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vecpress.infra import lite_engine
from vecpress.infra.index_plan import IndexPlan
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.milvus_client import is_refusal
from vecpress.infra.milvus_fields import (
    METADATA,
    VECTOR,
    as_columns,
    byte_batches,
    collection_schema,
    partition_key,
    scalar_index_type,
    table_rows,
    typed_fields,
)
from vecpress.infra.milvus_reads import MilvusReads, milvus_errors
from vecpress.infra.settings import MilvusSettings


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


class MilvusStore(MilvusReads):
    """A Milvus collection's reads (``MilvusReads``) and the writes of an ingest: schema checks,
    byte-bounded upserts with retries, deletes, indexes and aliases."""

    def __init__(self, settings: MilvusSettings) -> None:
        super().__init__(settings)
        self._server_version: str | None = None
        # An ingest needs pymilvus for its schema and index calls: connect now. (pymilvus is
        # imported with this module: imported first inside a running stream, beside Dask's
        # threads, it took 5 s, not 0.5.)
        try:
            self.client  # noqa: B018
        except BaseException:
            self.close()  # releases the Lite engine opened for it
            raise

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
            if self._lite is not None:
                self._lite.create_index(name, field, {"index_type": index_type})
                continue
            params = self.client.prepare_index_params()
            params.add_index(field, index_type=index_type, index_name=field)
            self.client.create_index(name, params)

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
        except milvus_errors():
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

    def upsert_table(self, name: str, table: pa.Table,
                     refused: list[RefusedRow] | None = None) -> int:
        """``upsert`` of rows given as an Arrow table of the collection's fields (the vector a list
        of floats). Milvus Lite takes them in column operations (``LiteEngine.insert_table``);
        the rows it leaves (those it would refuse), and every row on a server, go through
        ``upsert``. Returns the rows written."""
        left = (np.arange(table.num_rows) if self._lite is None
                else self._lite.insert_table(name, table))
        written = table.num_rows - len(left)
        if len(left):
            rest = table if len(left) == table.num_rows else table.take(left)
            written += self.upsert(name, table_rows(rest), refused)
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
        except milvus_errors(lite_engine.LiteRefusal) as exc:
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
        then indexes each segment when it is sealed, also those written afterwards; Milvus Lite
        builds it on ``load``."""
        if self._lite is not None:
            self._lite.create_index(name, VECTOR, {"index_type": plan.index_type,
                                                   "metric_type": plan.metric,
                                                   "params": plan.params})
            return
        index = self.client.prepare_index_params()
        index.add_index(VECTOR, index_type=plan.index_type, metric_type=plan.metric,
                        params=plan.params)
        self.client.create_index(name, index)
