"""Whether a record's metadata fits the typed fields declared for it (``metadata.fields``).

Checked where records are read, so a value its Milvus field cannot hold is quarantined with the
record's file and id, and the rest of the file loads; the loader then converts values that are
known to fit (``tasks.collection.loading``).
"""

from __future__ import annotations

import json
import math
from typing import Any

from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.tasks.inputs.records import InputError, Record

INT64 = (-(2**63), 2**63 - 1)
HINT = ("give the record a value of the declared type, or change metadata.fields "
        "(--typed-fields)")


def typed_problem(fields: dict[str, Any], declared: MetadataSettings) -> str | None:
    """Why ``fields`` (a record's metadata) does not fit ``declared`` (None when it does). A key
    that is absent or null fits: its field gets the type's empty value."""
    for name, kind in declared.fields.items():
        value = fields.get(name)
        if value is None:
            continue
        if kind == "varchar" and isinstance(value, str):
            size = len(value.encode())
            if size <= declared.varchar_max_bytes:
                continue
            return (f"metadata field '{name}' holds a string of {size:,} bytes, over the "
                    f"{declared.varchar_max_bytes:,} of metadata.varchar_max_bytes")
        if kind == "int64" and _is_int(value):
            if INT64[0] <= value <= INT64[1]:
                continue
            return f"metadata field '{name}' holds {value}, outside int64"
        if kind == "double" and (_is_int(value) or isinstance(value, float)) \
                and math.isfinite(value):
            continue
        if kind == "bool" and isinstance(value, bool):
            continue
        return (f"metadata field '{name}' holds {_shown(value)}, but metadata.fields declares "
                f"it {kind}")
    return None


def check_record(record: Record, declared: MetadataSettings) -> InputError | None:
    """The ``InputError`` of a record whose metadata does not fit its typed fields."""
    if not declared.fields or not record.metadata:
        return None
    problem = typed_problem(json.loads(record.metadata), declared)
    if problem is None:
        return None
    return InputError(record.source, f"record {record.doc_id}", problem, HINT)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    kind = {str: "string", bool: "boolean", int: "number", float: "number", list: "list",
            dict: "object"}.get(type(value), type(value).__name__)
    return f"the {kind} {text[:40]}{'...' if len(text) > 40 else ''}"
