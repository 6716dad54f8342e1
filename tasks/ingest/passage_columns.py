"""A passage shard being built, column by column, before it is written as one Parquet file."""

from __future__ import annotations

import pyarrow as pa

from vecpress.tasks.inputs.chunking import Passage
from vecpress.tasks.inputs.records import METADATA, TOKEN_IDS, TOKENIZER_KEY, Record, passage_pk


class PassageColumns:
    """The rows of one passage shard, as Python lists per column until ``table()``.

    Token ids are kept flat (one list of ints and the offsets where each passage's ids end), not
    as a list per passage: a shard's 20,000 small lists, all alive until it is written, kept the
    garbage collector's full passes busy (11% of a chunking task's wall time, measured with
    ``gc.callbacks``); ints are not tracked by the collector, lists are.
    """

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._columns: dict[str, list] = {n: [] for n in schema.names if n != TOKEN_IDS}
        self._ids: list[int] = []
        self._ends: list[int] = [0]

    def __len__(self) -> int:
        return len(self._columns["pk"])

    def add(self, record: Record, passages: list[Passage]) -> None:
        """A document's passages, numbered in order as its chunks."""
        columns = self._columns
        for number, passage in enumerate(passages):
            columns["pk"].append(passage_pk(record.source, record.doc_id, number))
            columns["chunk"].append(number)
            columns["text"].append(passage.text)
            self._ids += passage.token_ids
            self._ends.append(len(self._ids))
        many = len(passages)
        columns["doc_id"] += [record.doc_id] * many
        columns["source"] += [record.source] * many
        columns[METADATA] += [record.metadata] * many

    def table(self) -> pa.Table:
        """The shard, with its token ids when its schema keeps them."""
        arrays = {name: pa.array(values, self.schema.field(name).type)
                  for name, values in self._columns.items()}
        if TOKEN_IDS in self.schema.names:
            arrays[TOKEN_IDS] = self._id_lists()
        return pa.table([arrays[name] for name in self.schema.names], schema=self.schema)

    def ids_table(self, pks: pa.ChunkedArray, tokenizer_fingerprint: str) -> pa.Table:
        """``pks`` (the shard's ``table()`` column) and the token ids, tagged with their
        tokenizer: a shard's ids kept apart from it."""
        return pa.table({"pk": pks, TOKEN_IDS: self._id_lists()}).replace_schema_metadata(
            {TOKENIZER_KEY: tokenizer_fingerprint.encode()})

    def _id_lists(self) -> pa.Array:
        return pa.ListArray.from_arrays(pa.array(self._ends, pa.int32()),
                                        pa.array(self._ids, pa.int32()))

    def clear(self) -> None:
        for values in self._columns.values():
            values.clear()
        self._ids.clear()
        self._ends[1:] = []
