"""The typed metadata fields' columns of a shard, read out of its metadata JSON with Arrow.

The passage shards keep each passage's metadata as one JSON text; a collection's typed fields
(``metadata.fields``) are parsed out of it when a shard is loaded, by Arrow's JSON reader in one
call per shard rather than ``json.loads`` per passage.
"""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.tasks.inputs.typed_values import typed_problem

ARROW_TYPES = {"varchar": pa.string(), "int64": pa.int64(), "double": pa.float64(),
               "bool": pa.bool_()}
EMPTY = {"varchar": "", "int64": 0, "double": 0.0, "bool": False}


class TypedValueError(ValueError):
    """A shard holds a metadata value its typed field cannot hold (fields declared after the
    shard was read: a reindex with new ``--typed-fields``)."""


def typed_columns(metadata: list[str], typed: dict[str, str], where: str) -> dict[str, pa.Array]:
    """One column per typed field, from ``metadata`` (JSON texts, one per passage); a passage
    without the key (or with null) gets the type's empty value: "", 0, 0.0 or false."""
    if not typed:
        return {}
    if len(metadata) == 0:
        return {name: pa.array([], ARROW_TYPES[kind]) for name, kind in typed.items()}
    schema = pa.schema([(name, ARROW_TYPES[kind]) for name, kind in typed.items()])
    # One line per passage: JSON escapes the newlines inside strings.
    data = "\n".join(metadata).encode()
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(io.BytesIO(data), parse_options=options,
                             read_options=pj.ReadOptions(block_size=max(1 << 20, len(data) + 1)))
    except pa.ArrowInvalid as exc:
        raise _first_misfit(metadata, typed, where) or TypedValueError(
            f"{where}: the metadata does not fit the typed fields: {exc}") from exc
    if table.num_rows != len(metadata):
        raise TypedValueError(f"{where}: {table.num_rows} metadata rows read for "
                              f"{len(metadata)} passages")
    return {name: pc.fill_null(table.column(name), pa.scalar(EMPTY[kind], ARROW_TYPES[kind]))
            .combine_chunks() for name, kind in typed.items()}


def _first_misfit(metadata: list[str], typed: dict[str, str], where: str
                  ) -> TypedValueError | None:
    declared = MetadataSettings(fields=typed, varchar_max_bytes=65_535)
    for row, text in enumerate(metadata):
        problem = typed_problem(json.loads(text or "{}"), declared)
        if problem is not None:
            return TypedValueError(f"{where}, passage {row + 1}: {problem}; declare fields its "
                                   "passages fit, or ingest again with --recreate so that the "
                                   "records are checked (and the misfits quarantined)")
    return None
