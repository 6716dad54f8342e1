"""The collection's fields: the one schema of every vecpress collection, its typed metadata
fields and their scalar indexes, and rows as the columns of an upsert.

A typed field (``metadata.fields``) sits between the JSON ``metadata`` field and the vector, in
name order, so bulk-import files (``tasks.collection.loading.shard_table``) follow one order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vecpress.infra.bounds import MAX_VARCHAR_BYTES
from vecpress.infra.metadata_settings import RESERVED, MetadataSettings

VECTOR = "vector"
METADATA = "metadata"  # the JSON field of a passage's metadata (collections built before lack it)
MAX_TEXT = MAX_VARCHAR_BYTES
# A typed field's kind and its Milvus type's name. Types are compared by name: pymilvus's
# ``DataType`` and the Lite engine's own enum (``LiteEngine.fields``) both have it, and this module
# is read on the search path, which does not import pymilvus on Lite.
DATA_TYPES = {"varchar": "VARCHAR", "int64": "INT64", "double": "DOUBLE", "bool": "BOOL"}
_KINDS = {type_name: kind for kind, type_name in DATA_TYPES.items()}


def type_name(field: dict[str, Any]) -> str:
    """The name of a described field's type, whichever client described it."""
    kind = field["type"]
    return str(getattr(kind, "name", kind))


def collection_schema(dim: int, description: str, metadata: MetadataSettings | None = None) -> Any:
    """The schema of a vecpress collection, with ``metadata.fields`` as typed fields."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description=description)
    schema.add_field("pk", DataType.INT64, is_primary=True)
    schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field("chunk", DataType.INT32)
    schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_TEXT)
    schema.add_field("codec_id", DataType.VARCHAR, max_length=64)
    schema.add_field(METADATA, DataType.JSON)  # the record's other fields: filters name them
    declared = metadata or MetadataSettings()
    for name, kind in declared.fields.items():
        extra: dict[str, Any] = {"max_length": declared.varchar_max_bytes} \
            if kind == "varchar" else {}
        if name == declared.partition_key:
            extra["is_partition_key"] = True
        schema.add_field(name, DataType[DATA_TYPES[kind]], **extra)
    schema.add_field(VECTOR, DataType.FLOAT_VECTOR, dim=dim)
    return schema


def typed_fields(described: dict[str, Any]) -> dict[str, str]:
    """The typed metadata fields of a collection as ``describe_collection`` gives it."""
    return {f["name"]: _KINDS[type_name(f)] for f in described["fields"]
            if f["name"] not in RESERVED and type_name(f) in _KINDS}


def partition_key(described: dict[str, Any]) -> str | None:
    """The collection's partition key field, if it has one."""
    return next((f["name"] for f in described["fields"] if f.get("is_partition_key")), None)


def scalar_index_type(kind: str, lite: bool) -> str | None:
    """The scalar index of a typed field: INVERTED on Milvus Lite (its only one); the server's
    default for the type otherwise ("": Trie for varchar, STL_SORT for numbers on Milvus 2.3,
    INVERTED on 2.4+). Milvus 2.3 indexes no BOOL field: None."""
    if lite:
        return "INVERTED"
    return None if kind == "bool" else ""


def as_columns(rows: Sequence[dict[str, Any]], fields: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
    """Rows as the column list of a column-wise upsert, in the schema's field order (the vector
    as one float32 matrix)."""
    columns = []
    for field in fields:
        if type_name(field) == "JSON":  # rows made without metadata have none: {}
            values = [row.get(field["name"]) or "{}" for row in rows]
        else:
            values = [row[field["name"]] for row in rows]
        if type_name(field) == "FLOAT_VECTOR":
            values = np.asarray(values, dtype=np.float32)  # type: ignore[assignment]
        columns.append({"name": field["name"], "type": field["type"], "values": values})
    return columns


def table_rows(table: pa.Table) -> list[dict[str, Any]]:
    """An Arrow table's rows as ``upsert`` takes them: the vector a float32 row (of one matrix
    where every row has a vector of one length), the other fields Python values."""
    rows = table.drop_columns([VECTOR]).to_pylist()
    column = table.column(VECTOR).combine_chunks()
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if column.null_count == 0 and len(lengths) and (lengths == lengths[0]).all():
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False)
        vectors: Sequence[Any] = values.astype(np.float32, copy=False).reshape(len(rows), -1)
    else:  # a row Milvus will refuse (no vector, another length): as it is
        vectors = [None if v is None else np.asarray(v, np.float32) for v in column.to_pylist()]
    for row, vector in zip(rows, vectors, strict=True):
        row[VECTOR] = vector
    return rows


def byte_batches(rows: Iterable[dict[str, Any]], limit: int) -> Iterable[list[dict[str, Any]]]:
    """Batches of about ``limit`` bytes (values' nbytes, or their text's length)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        row_bytes = sum(getattr(v, "nbytes", None) or len(str(v)) for v in row.values())
        if batch and size + row_bytes > limit:
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_bytes
    if batch:
        yield batch
