"""Records from mappings: a JSONL line's object or a Parquet row, read the same way.

Both kinds name their text, id and metadata by field, so one function turns either into a
``Record`` or an ``InputError`` saying which field is wrong and what to write instead.
"""

from __future__ import annotations

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.metadata import NO_FILE, FileMetadata, record_metadata
from vecpress.tasks.inputs.records import InputError, Record

TYPE_HINT = "the text must be a string; convert it, or set --text-field if another field holds the text"
DUPLICATE_HINT = "give every record a unique id; the later record was skipped"


class SeenIds:
    """The document ids already read from one file, and the line or row each came from.

    A second record with the same id would replace the first one's passages, so the later one is
    skipped and reported; ids made up from the position (no id given) are unique already.
    """

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.first: dict[str, int] = {}

    def claim(self, record: Record, number: int, positional_id: str, where: str
              ) -> Record | InputError:
        if record.doc_id == positional_id:
            return record
        first = self.first.setdefault(record.doc_id, number)
        if first == number:
            return record
        return InputError(record.source, where,
                          f"id '{record.doc_id}' already used at {self.unit} {first} of this file",
                          DUPLICATE_HINT)


def json_type(value: object) -> str:
    """The JSON name of a parsed value's type (users wrote JSON, not Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def record_from_mapping(
    obj: object, source: str, where: str, fallback_id: str, settings: InputSettings,
    file: FileMetadata = NO_FILE,
) -> Record | InputError | None:
    field = settings.text_field
    if not isinstance(obj, dict):
        return InputError(source, where, f"expected a JSON object, got {json_type(obj)}",
                          f'write {{"{settings.id_field}": ..., "{field}": ...}}')
    if field not in obj:
        return InputError(source, where, f"record has no field '{field}' (fields: {_names(obj)})",
                          "set --text-field to the field that holds the text")
    text = obj[field]
    if text is None:
        return InputError(source, where, f"text field '{field}' is null",
                          "give the record text or remove it")
    if not isinstance(text, str):
        return InputError(source, where, f"text field '{field}' is {json_type(text)}, not a string",
                          TYPE_HINT)
    if not text.strip():
        return None  # an empty document has no passages; nothing is lost by skipping it
    raw_id = obj.get(settings.id_field)
    doc_id = fallback_id if raw_id is None else str(raw_id)
    metadata = record_metadata(obj, source, where, settings, file)
    if isinstance(metadata, InputError):
        return metadata
    return Record(doc_id=doc_id, text=text, source=source, metadata=metadata)


def _names(obj: dict, most: int = 10) -> str:
    """The first field names of a record, for an error that says which fields there are."""
    names = [str(name) for name in obj][:most]
    more = ", ..." if len(obj) > most else ""
    return ", ".join(names) + more if names else "none"
