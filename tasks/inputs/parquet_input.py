"""Parquet inputs: one record per row, the text column checked once per file.

Rows are read in Arrow batches of the columns a run keeps (text, id and the metadata fields);
a file whose text column is missing or not a string column is one error, not one per row.
"""

from __future__ import annotations

from collections.abc import Iterator

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.mappings import SeenIds, record_from_mapping
from vecpress.tasks.inputs.metadata import FileMetadata, file_metadata
from vecpress.tasks.inputs.records import InputError, Record, SourceFile


def read_parquet(src: SourceFile, settings: InputSettings) -> Iterator[Record | InputError]:
    with fsspec.open(src.url, "rb") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            yield InputError(src.url, "", f"not a readable Parquet file: {exc}",
                             "check that the file is complete")
            return
        schema_error = _text_column_error(src.url, pf.schema_arrow, settings.text_field)
        if schema_error is not None:
            yield schema_error
            return
        names = pf.schema_arrow.names
        columns = [settings.text_field]
        if settings.id_field in names:
            columns.append(settings.id_field)
        keep = settings.metadata_fields
        columns += [n for n in names if n not in columns and (keep is None or n in keep)]
        if pf.metadata.num_rows == 0:
            yield InputError(src.url, "", "empty file, nothing to index",
                             "remove the file or give it rows")
            return
        file = file_metadata(src.size, src.modified_at, settings)
        yield from _parquet_rows(src.url, pf, columns, settings, file)


def _parquet_rows(source: str, pf: pq.ParquetFile, columns: list[str], settings: InputSettings,
                  file: FileMetadata) -> Iterator[Record | InputError]:
    ids_seen = SeenIds("row")
    row = 0
    for batch in pf.iter_batches(columns=columns, batch_size=4096):
        for obj in batch.to_pylist():  # the row's id, text and metadata columns
            row += 1
            obj.setdefault(settings.id_field, None)
            item = record_from_mapping(obj, source, f"row {row}", f"{source}#R{row}", settings,
                                        file)
            if isinstance(item, Record):
                item = ids_seen.claim(item, row, f"{source}#R{row}", f"row {row}")
            if item is not None:
                yield item


def _text_column_error(source: str, schema: pa.Schema, field: str) -> InputError | None:
    """One error for the whole file when its text column is missing or holds no strings (rather
    than the same error for every row)."""
    if field not in schema.names:
        return InputError(source, "schema",
                          f"no column '{field}' (columns: {', '.join(schema.names)})",
                          "set --text-field to the column that holds the text")
    arrow_type = schema.field(field).type
    if _is_string_type(arrow_type):
        return None
    return InputError(source, "schema", f"column '{field}' has type {arrow_type}, expected string",
                      "cast the column to string, or set --text-field to the column that holds "
                      "the text")


def _is_string_type(arrow_type: pa.DataType) -> bool:
    """Arrow types whose values read back as Python strings."""
    if pa.types.is_dictionary(arrow_type):
        return _is_string_type(arrow_type.value_type)
    return (pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type)
            or pa.types.is_string_view(arrow_type))
