"""A record's metadata: the fields of a JSONL object or Parquet row besides its id and text.

Kept as canonical JSON text (sorted keys) from the reader to Milvus's JSON field, so that an
unchanged record gives the same bytes every run and a value Milvus cannot store is found where
the record is read, with the record's file and line, rather than when a batch is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.records import InputError

# Milvus keeps a JSON value of at most 64 KiB.
MAX_METADATA_BYTES = 65_536
METADATA_HINT = ("keep metadata to JSON values (strings, numbers, booleans, lists, objects) under "
                 "64 KiB, or list the fields to keep with --metadata-fields")


class _Unstorable(TypeError):
    pass


def _json_value(value: Any) -> Any:
    """Values of Parquet columns that JSON has no type for: dates and times as ISO 8601 text,
    decimals as numbers; bytes cannot be stored."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    raise _Unstorable(f"a {type(value).__name__} value, which JSON has no type for")


def record_metadata(obj: dict[str, Any], source: str, where: str, settings: InputSettings
                    ) -> str | InputError | None:
    """The record's metadata as JSON text (None when it has none), or why it cannot be stored."""
    skip = (settings.id_field, settings.text_field)
    keep = settings.metadata_fields
    fields = {str(k): v for k, v in obj.items()
              if k not in skip and (keep is None or k in keep)}
    if not fields:
        return None
    try:
        text = json.dumps(fields, ensure_ascii=False, allow_nan=False, sort_keys=True,
                          separators=(",", ":"), default=_json_value)
    except _Unstorable as exc:
        name = next((k for k, v in fields.items() if _fails(v)), "?")
        return InputError(source, where, f"metadata field '{name}' holds {exc}", METADATA_HINT)
    except ValueError:  # NaN or infinity: not JSON, and Milvus refuses them
        name = next((k for k, v in fields.items() if _fails(v)), "?")
        return InputError(source, where, f"metadata field '{name}' holds NaN or infinity, "
                          "which JSON cannot store", METADATA_HINT)
    if len(text.encode()) > MAX_METADATA_BYTES:
        return InputError(source, where, f"metadata is {len(text.encode()):,} bytes as JSON, over "
                          f"the {MAX_METADATA_BYTES:,} Milvus stores", METADATA_HINT)
    return text


def _fails(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False, default=_json_value)
    except (TypeError, ValueError):
        return True
    return False
