"""Rows into Milvus Lite as one Arrow batch: a shard's columns straight into the engine's log.

Milvus Lite 3's ``insert`` takes row dicts, checks each in Python (every vector element's type
among them), and builds the Arrow batch its write-ahead log and memtable hold from those dicts,
re-serialising each JSON value. A shard's rows are Arrow columns already (its Parquet), so here
the same batch is built from them in column operations, the same checks are made on whole
columns, and the batch goes to the collection's own write path (``Collection._apply``, then its
flush check), as ``insert`` does after its checks. 40,000 rows of 32-d vectors: 27.6 µs a row
through the engine's ``upsert`` against 1.6 here; its flush then took 30.3 µs a row, and 4.7 with
``flush_in_columns`` (``benchmarks/upsert_columns.py``, ``results/upsert_columns.json``).

An upsert of complete rows is an insert in Lite (its ``upsert`` only fills a row's missing fields
from the stored one; a newer sequence number then shadows the older row), so this is one too.

This reaches past Lite's public interface, so it is taken only where it is known to hold: a
collection without a partition key, dynamic fields, field defaults, functions or auto ids, on
an engine that has the internals used. Anything else, and every row the checks would refuse, is
left to the caller's row path, which gives Lite's own refusal.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

_ENGINE_PARTS = ("_schema", "_wal_data_schema", "_next_seq", "_apply", "_should_flush",
                 "_trigger_flush", "_manifest")


def insert_table(collection: Any, table: pa.Table, partition: str = "_default") -> np.ndarray:
    """Write ``table``'s rows into Lite's ``collection`` (a ``milvus_lite`` ``Collection``); a
    later row of a primary key shadows the earlier one. Returns the positions of the rows not
    written, for the caller's row path: all of them where this path does not apply, else those
    that Lite's checks would refuse (a null where the field takes none, a VARCHAR over its
    ``max_length``, a vector of another dimension)."""
    every = np.arange(table.num_rows)
    if table.num_rows == 0 or not _applies(collection, partition):
        return every
    try:
        from milvus_lite.engine.operation import InsertOp
    except ImportError:
        return every
    fields = {f.name: f for f in collection._schema.fields}
    refused = np.zeros(table.num_rows, bool)
    for name, field in fields.items():
        if name not in table.column_names:
            return every  # Lite fills or refuses a missing field: its row path says which
        refused |= _refused(table.column(name), field)
    kept = table.filter(pa.array(~refused)) if refused.any() else table
    if kept.num_rows:
        _write(collection, kept, partition, InsertOp)
    return np.flatnonzero(refused)


def _applies(collection: Any, partition: str) -> bool:
    """Whether this collection's inserts are only the checks and the write made here."""
    if not all(hasattr(collection, part) for part in _ENGINE_PARTS):
        log.debug("Milvus Lite without the expected internals: rows go through insert")
        return False
    schema = collection._schema
    return (not schema.enable_dynamic_field
            and not getattr(collection, "_auto_id", True)
            and getattr(collection, "_partition_key_field", None) is None
            and not getattr(collection, "_ingestion_chain", True)
            and not getattr(collection, "_bm25_analyzers", True)
            and all(f.default_value is None for f in schema.fields)
            and collection._manifest.has_partition(partition))


def _refused(column: pa.ChunkedArray, field: Any) -> np.ndarray:
    """Rows of ``column`` that Lite's ``validate_record`` would refuse for ``field``."""
    from milvus_lite.schema.types import DataType

    bad = np.zeros(len(column), bool)
    if column.null_count and not field.nullable:
        bad |= column.is_null().to_numpy(zero_copy_only=False)
    if field.dtype == DataType.VARCHAR and field.max_length is not None:
        too_long = pc.greater(pc.utf8_length(column), field.max_length)
        bad |= pc.fill_null(too_long, False).to_numpy(zero_copy_only=False)
    if field.dtype == DataType.FLOAT_VECTOR:
        lengths = pc.list_value_length(column)
        bad |= pc.fill_null(pc.not_equal(lengths, field.dim), True).to_numpy(
            zero_copy_only=False)
    return bad


def _write(collection: Any, table: pa.Table, partition: str, insert_op: Any) -> None:
    """The batch ``Collection.insert`` builds, from columns: a sequence number a row, the
    partition, each field in the log's type; then its write and its flush check."""
    schema = collection._wal_data_schema
    rows = table.num_rows
    first = collection._next_seq
    collection._next_seq += rows
    given = {"_seq": pa.array(np.arange(first, first + rows, dtype=np.uint64)),
             "_partition": pa.array(np.full(rows, partition, object), pa.string())}
    arrays = [given[f.name] if f.name in given else _as(table.column(f.name), f.type)
              for f in schema]
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    collection._apply(insert_op(partition=partition, batch=batch))
    if collection._should_flush():
        collection._trigger_flush()


def _as(column: pa.ChunkedArray, kind: pa.DataType) -> pa.Array:
    """One column in the log's type; a vector list becomes the fixed-size list Lite keeps."""
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(kind) and not pa.types.is_fixed_size_list(array.type):
        values = pc.list_flatten(array).cast(kind.value_type)
        return pa.FixedSizeListArray.from_arrays(values, kind.list_size)
    return array.cast(kind)


def flush_in_columns() -> None:
    """Milvus Lite's flush takes its memtable's live rows in one Arrow ``take`` instead of one
    ``as_py`` a value (``MemTable._build_data_table``): the same table, bit for bit. In a 100k
    nano ingest that method took 2.4 of the flow process's 14.9 busy seconds
    (results/profile_ingest_100000_stop48_before.json). Installed once per process, where the
    engine has that method."""
    try:
        from milvus_lite.storage.memtable import MemTable
    except ImportError:
        return
    original = getattr(MemTable, "_build_data_table", None)
    if original is None or hasattr(original, "replaced"):
        return

    def build_data_table(self: Any, rows: list[tuple[int, int]]) -> pa.Table:
        batches = self._insert_batches
        if not rows or any(b.schema != batches[0].schema for b in batches):
            return original(self, rows)
        sizes = np.fromiter((b.num_rows for b in batches), np.int64, len(batches))
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        where = np.array(rows, np.int64)
        taken = pa.Table.from_batches(batches).select(self._data_schema.names).take(
            pa.array(starts[where[:, 0]] + where[:, 1]))
        return pa.Table.from_arrays([column.combine_chunks() for column in taken.columns],
                                    schema=self._data_schema)

    build_data_table.replaced = original  # type: ignore[attr-defined]  # for its test
    MemTable._build_data_table = build_data_table
