"""A record's metadata: the fields of a JSONL object or Parquet row besides its id and text (or
a text file's front matter), and its file's size and modification time.

Kept as canonical JSON text (sorted keys) from the reader to Milvus's JSON field, so that an
unchanged record gives the same bytes every run and a value Milvus cannot store is found where
the record is read, with the record's file and line, rather than when a batch is loaded.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class FileMetadata:
    """What every record of one file gets: the file's size and modification time (ISO 8601
    UTC), as a dict to merge under a record's own fields, and as the JSON text of a record that
    has none (one string shared by all of them)."""

    fields: dict[str, Any]
    text: str | None


NO_FILE = FileMetadata({}, None)


def file_metadata(size: int, modified_at: str, settings: InputSettings) -> FileMetadata:
    """The file-level metadata of one file, as ``settings.metadata_fields`` keeps it."""
    found: dict[str, Any] = {"file_bytes": size}
    if modified_at:
        found["file_modified"] = modified_at
    keep = settings.metadata_fields
    fields = {k: v for k, v in found.items() if keep is None or k in keep}
    return FileMetadata(fields, _dumps(fields) if fields else None)


def modified_time(info: dict[str, Any]) -> str:
    """When the file was last modified, as ISO 8601 UTC to the second ("" when the file system
    does not say): ``mtime`` locally, ``LastModified`` on S3, ``updated`` on Google Cloud."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        when: dt.datetime | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            when = dt.datetime.fromtimestamp(value, dt.UTC)
        elif isinstance(value, dt.datetime):
            when = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        elif isinstance(value, str):
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            when = when if when.tzinfo else when.replace(tzinfo=dt.UTC)
        if when is not None:
            return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ""


def _dumps(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, allow_nan=False, sort_keys=True,
                      separators=(",", ":"), default=_json_value)


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


def record_metadata(obj: dict[str, Any], source: str, where: str, settings: InputSettings,
                    file: FileMetadata = NO_FILE) -> str | InputError | None:
    """The record's metadata as JSON text (None when it has none), or why it cannot be stored.
    The file's keys are under the record's own: a record field of the same name wins."""
    skip = (settings.id_field, settings.text_field)
    keep = settings.metadata_fields
    fields = {str(k): v for k, v in obj.items()
              if k not in skip and (keep is None or k in keep)}
    if not fields:
        return file.text
    if file.fields:
        fields = file.fields | fields
    try:
        text = _dumps(fields)
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


# A Markdown-style front matter block: "---" on the first line, YAML, "---" (or "...") alone.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)^(?:---|\.\.\.)[ \t]*(?:\r?\n|\Z)",
                          re.DOTALL | re.MULTILINE)


def front_matter(text: str, source: str, settings: InputSettings, file: FileMetadata = NO_FILE
                 ) -> tuple[str, str | None] | InputError:
    """(the text without its front matter, the front matter and the file's keys as metadata
    JSON) of a text file; the text as it is when it has none. Front matter that is not a YAML
    mapping is an error naming the file and line, rather than text that silently loses its
    metadata."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return text, file.text
    import yaml

    try:
        fields = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 2}" if mark is not None else "front matter"
        return InputError(source, where, f"front matter is not valid YAML "
                          f"({getattr(exc, 'problem', None) or exc})",
                          "fix it, or start the file without a '---' line")
    if fields is None:
        return text[match.end():], file.text
    if not isinstance(fields, dict):
        return InputError(source, "line 1", "front matter must be a YAML mapping of keys to "
                          "values", "write key: value lines between the '---' lines")
    metadata = record_metadata(fields, source, "front matter", settings, file)
    if isinstance(metadata, InputError):
        return metadata
    return text[match.end():], metadata


def _fails(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False, default=_json_value)
    except (TypeError, ValueError):
        return True
    return False
