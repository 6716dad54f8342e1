"""Find input files (local paths or fsspec URLs) and read them into records.

Readers never raise on bad content: each problem becomes an ``InputError`` naming the file and
line/record, and reading goes on with the next record or file, so one bad input loses nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePosixPath

import fsspec
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.records import InputError, Record, SourceFile

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
UTF8_HINT = "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"


def input_kind(path: str, settings: InputSettings) -> str | None:
    """The reader for a path by its ending, or None when vecpress does not read such files."""
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in settings.text_suffixes:
        return "text"
    return None


def discover(paths: list[str], settings: InputSettings) -> tuple[list[SourceFile], list[InputError]]:
    """Expand files, directories (recursively) and globs into readable source files."""
    found: dict[str, SourceFile] = {}
    errors: list[InputError] = []
    for given in paths:
        try:
            fs, root = url_to_fs(given)
            if any(ch in root for ch in "*?["):
                candidates = {p: fs.info(p) for p in fs.glob(root)}
            elif fs.isdir(root):
                candidates = fs.find(root, detail=True)
            elif fs.exists(root):
                candidates = {root: fs.info(root)}
            else:
                errors.append(InputError(given, "", "no such file or directory",
                                         "check the path or URL"))
                continue
        except (OSError, ValueError, ImportError) as exc:
            errors.append(InputError(given, "", f"cannot list input: {exc}",
                                     "check the URL and that its fsspec backend is installed"))
            continue
        matched = 0
        for path, info in sorted(candidates.items()):
            if info.get("type") == "directory":
                continue
            kind = input_kind(path, settings)
            if kind is None:
                if len(candidates) == 1:  # a file named explicitly, of a type we cannot read
                    errors.append(InputError(fs.unstrip_protocol(path), "",
                                             "unsupported file type",
                                             f"use one of {_supported(settings)}"))
                continue
            url = fs.unstrip_protocol(path)
            found[url] = SourceFile(url=url, size=int(info.get("size") or 0), kind=kind,
                                    modified=modified_stamp(info))
            matched += 1
        if matched == 0 and len(candidates) != 1:
            errors.append(InputError(given, "", "no readable files found",
                                     f"supported endings: {_supported(settings)}"))
    return list(found.values()), errors


def modified_stamp(info: dict) -> str:
    """The backend's modification stamp: mtime locally, ETag / update time on object stores."""
    for key in ("mtime", "ETag", "etag", "LastModified", "updated", "md5Hash", "created"):
        if info.get(key) is not None:
            return f"{key}={info[key]}"
    return ""


def _supported(settings: InputSettings) -> str:
    return ", ".join([*settings.text_suffixes, *JSONL_SUFFIXES, *PARQUET_SUFFIXES])


def read_records(src: SourceFile, settings: InputSettings) -> Iterator[Record | InputError]:
    """Yield the records of one source file, and an ``InputError`` for each bad part."""
    try:
        if src.kind == "text":
            yield from _read_text(src)
        elif src.kind == "jsonl":
            yield from _read_jsonl(src, settings)
        else:
            yield from _read_parquet(src, settings)
    except OSError as exc:
        yield InputError(src.url, "", f"cannot read file: {exc}", "check permissions and storage")


def _read_text(src: SourceFile) -> Iterator[Record | InputError]:
    with fsspec.open(src.url, "rb") as fh:
        raw = fh.read()
    if not raw.strip():
        yield InputError(src.url, "", "empty file, nothing to index",
                         "remove the file or give it content")
        return
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        yield InputError(src.url, f"line {line} (byte {exc.start})", "invalid UTF-8", UTF8_HINT)
        return
    yield Record(doc_id=src.url, text=text, source=src.url)


def _read_jsonl(src: SourceFile, settings: InputSettings) -> Iterator[Record | InputError]:
    seen_content = False
    with fsspec.open(src.url, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"line {number}"
            if not raw.strip():
                continue
            seen_content = True
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield InputError(src.url, where, "invalid UTF-8", UTF8_HINT)
                continue
            except json.JSONDecodeError as exc:
                yield InputError(src.url, where, f"malformed JSON ({exc.msg}, column {exc.colno})",
                                 "fix or remove the line")
                continue
            record = _record_from_mapping(obj, src.url, where, f"{src.url}#L{number}", settings)
            if record is not None:
                yield record
    if not seen_content:
        yield InputError(src.url, "", "empty file, nothing to index",
                         "remove the file or give it content")


def _record_from_mapping(
    obj: object, source: str, where: str, fallback_id: str, settings: InputSettings
) -> Record | InputError | None:
    if not isinstance(obj, dict):
        return InputError(source, where, f"expected a JSON object, got {type(obj).__name__}",
                          f'write {{"{settings.id_field}": ..., "{settings.text_field}": ...}}')
    text = obj.get(settings.text_field)
    if not isinstance(text, str):
        got = "missing" if text is None else type(text).__name__
        return InputError(source, where, f"text field '{settings.text_field}' is {got}",
                          "set --text-field to the field that holds the text")
    if not text.strip():
        return None  # an empty document has no passages; nothing is lost by skipping it
    raw_id = obj.get(settings.id_field)
    doc_id = fallback_id if raw_id is None else str(raw_id)
    return Record(doc_id=doc_id, text=text, source=source)


def _read_parquet(src: SourceFile, settings: InputSettings) -> Iterator[Record | InputError]:
    with fsspec.open(src.url, "rb") as fh:
        try:
            pf = pq.ParquetFile(fh)
        except Exception as exc:  # pyarrow raises several types for corrupt files
            yield InputError(src.url, "", f"not a readable Parquet file: {exc}",
                             "check that the file is complete")
            return
        names = pf.schema_arrow.names
        if settings.text_field not in names:
            yield InputError(src.url, "schema",
                             f"no column '{settings.text_field}' (columns: {', '.join(names)})",
                             "set --text-field to the column that holds the text")
            return
        columns = [settings.text_field]
        has_id = settings.id_field in names
        if has_id:
            columns.append(settings.id_field)
        if pf.metadata.num_rows == 0:
            yield InputError(src.url, "", "empty file, nothing to index",
                             "remove the file or give it rows")
            return
        row = 0
        for batch in pf.iter_batches(columns=columns, batch_size=4096):
            texts = batch.column(settings.text_field).to_pylist()
            ids = batch.column(settings.id_field).to_pylist() if has_id else [None] * len(texts)
            for text, raw_id in zip(texts, ids, strict=True):
                row += 1
                obj = {settings.text_field: text, settings.id_field: raw_id}
                record = _record_from_mapping(obj, src.url, f"row {row}", f"{src.url}#R{row}",
                                              settings)
                if record is not None:
                    yield record


def read_texts(url: str, settings: InputSettings) -> list[str]:
    """All record texts of one input (evaluation queries); any input error is fatal here."""
    files, errors = discover([url], settings)
    records = [item for src in files for item in read_records(src, settings)]
    errors += [item for item in records if isinstance(item, InputError)]
    if errors:
        raise ValueError(f"evaluation queries: {errors[0]}")
    return [r.text for r in records if isinstance(r, Record)]
