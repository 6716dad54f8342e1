"""Find input files (local paths or fsspec URLs) and read them into records.

Readers never raise on bad content: each problem becomes an ``InputError`` naming the file and
line/record, and reading goes on with the next record or file, so one bad input loses nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import PurePosixPath

import fsspec
import orjson
from fsspec.core import url_to_fs

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.mappings import SeenIds, record_from_mapping
from vecpress.tasks.inputs.metadata import (
    NO_FILE,
    FileMetadata,
    file_metadata,
    front_matter,
    modified_time,
)
from vecpress.tasks.inputs.parquet_input import read_parquet
from vecpress.tasks.inputs.records import InputError, Record, SourceFile
from vecpress.tasks.inputs.sniffing import (
    BINARY_HINT,
    SNIFF_BYTES,
    binary_reason,
    jsonl_binary,
    unreadable_file,
)

JSONL_SUFFIXES = (".jsonl", ".ndjson")
PARQUET_SUFFIXES = (".parquet", ".pq")
UTF8_HINT = "re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
BOM = "\ufeff"


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


MISSING = "no such file or directory"
UNLISTABLE = "cannot list input"


def cannot_list(error: InputError) -> bool:
    """Whether ``error`` is ``discover``'s for a named source that does not exist or cannot be
    listed: what it held is unknown, unlike a folder that lists no readable file."""
    return error.message == MISSING or error.message.startswith(UNLISTABLE + ":")


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
                errors.append(InputError(given, "", MISSING, "check the path or URL"))
                continue
        except (OSError, ValueError, ImportError) as exc:
            errors.append(InputError(given, "", f"{UNLISTABLE}: {exc}",
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
                                    modified=modified_stamp(info), modified_at=modified_time(info))
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


def read_records(src: SourceFile, settings: InputSettings
                 ) -> Generator[Record | InputError, None, None]:
    """Yield the records of one source file, and an ``InputError`` for each bad part."""
    try:
        if src.kind == "text":
            yield from _read_text(src, settings)
        elif src.kind == "jsonl":
            yield from _read_jsonl(src, settings)
        else:
            yield from read_parquet(src, settings)
    except OSError as exc:
        yield InputError(src.url, "", f"cannot read file: {exc}", "check permissions and storage")


def _file(src: SourceFile, settings: InputSettings) -> FileMetadata:
    return file_metadata(src.size, src.modified_at, settings)


def _empty(source: str, what: str = "empty file") -> InputError:
    return InputError(source, "", f"{what}, nothing to index", "remove the file or give it content")


def _read_text(src: SourceFile, settings: InputSettings) -> Iterator[Record | InputError]:
    with fsspec.open(src.url, "rb") as fh:
        raw = fh.read()
    if not raw.strip():
        yield _empty(src.url)
        return
    unreadable = unreadable_file(src.url, raw[:SNIFF_BYTES])
    if unreadable is not None:
        yield unreadable
        return
    try:
        text = raw.decode("utf-8").removeprefix(BOM)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        yield InputError(src.url, f"line {line} (byte {exc.start})", "invalid UTF-8", UTF8_HINT)
        return
    matter = front_matter(text, src.url, settings, _file(src, settings))
    if isinstance(matter, InputError):
        yield matter
        return
    text, metadata = matter
    if not text.strip():  # Unicode whitespace (no-break spaces, a lone BOM) is empty too
        yield _empty(src.url, "empty file (whitespace only)")
        return
    yield Record(doc_id=src.url, text=text, source=src.url, metadata=metadata)


def _read_jsonl(src: SourceFile, settings: InputSettings) -> Iterator[Record | InputError]:
    seen_content = False
    ids = SeenIds("line")
    file = _file(src, settings)
    with fsspec.open(src.url, "rb") as fh:
        unreadable = jsonl_binary(src.url, fh.read(SNIFF_BYTES))
        if unreadable is not None:
            yield unreadable
            return
        fh.seek(0)
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            seen_content = True
            item = _jsonl_record(raw, number, src.url, settings, file)
            if isinstance(item, Record):
                item = ids.claim(item, number, f"{src.url}#L{number}", f"line {number}")
            if item is not None:
                yield item
    if not seen_content:
        yield _empty(src.url)


def _jsonl_record(raw: bytes, number: int, source: str, settings: InputSettings,
                  file: FileMetadata = NO_FILE) -> Record | InputError | None:
    """The record of one JSONL line (None for whitespace-only text), or what is wrong with it."""
    where = f"line {number}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        reason = binary_reason(raw)
        if reason is not None:
            return InputError(source, where, f"binary data ({reason} of the line), not text",
                              BINARY_HINT)
        return InputError(source, where, "invalid UTF-8", UTF8_HINT)
    if number == 1:
        line = line.removeprefix(BOM)  # written by some Windows tools; not part of the JSON
    try:
        obj = parse_json_line(line)
    except json.JSONDecodeError as exc:
        return InputError(source, where, f"malformed JSON ({exc.msg}, column {exc.colno})",
                          "fix or remove the line")
    return record_from_mapping(obj, source, where, f"{source}#L{number}", settings, file)


def parse_json_line(line: str) -> object:
    """``json.loads(line, strict=False)``, exactly, at orjson's speed (~1.7 µs a docstring line
    with the check below, instead of ~4.3).

    orjson refuses what the standard parser keeps (control characters inside strings, NaN,
    1e309, lone surrogates, a BOM), and those lines go to the standard parser (strict=False: a
    NUL or a tab inside a string is kept), whose result or error is the one users have always
    had. orjson also reads an integer over 64 bits as a float, so a line whose value holds any
    float is parsed again by the standard parser too (cheaper than scanning every line for long
    digit runs: a regex costs ~3 µs a line).
    """
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _holds_float(value):
            return value
    return json.loads(line, strict=False)


def _holds_float(value: object) -> bool:
    if type(value) is dict:
        return any(_holds_float(v) for v in value.values())
    if type(value) is list:
        return any(_holds_float(v) for v in value)
    return type(value) is float


def read_texts(url: str, settings: InputSettings) -> list[str]:
    """All record texts of one input (evaluation queries); any input error is fatal here."""
    files, errors = discover([url], settings)
    records = [item for src in files for item in read_records(src, settings)]
    errors += [item for item in records if isinstance(item, InputError)]
    if errors:
        raise ValueError(f"evaluation queries: {errors[0]}")
    return [r.text for r in records if isinstance(r, Record)]


def sample_texts(paths: list[str], settings: InputSettings, count: int = 128,
                 max_words: int = 120, max_files: int = 64) -> list[str]:
    """Up to ``count`` texts spread over the first ``max_files`` input files (a few records of
    each, in turn), each cut to ``max_words`` words: probes of the user's own data for the
    export's fidelity gate. Unreadable parts are skipped here; the ingest reports them.
    """
    files = discover(paths, settings)[0][:max_files]
    readers = [read_records(src, settings) for src in files]
    texts: list[str] = []
    try:
        while readers and len(texts) < count:
            for reader in list(readers):
                try:
                    item = next(reader, None)
                except Exception:  # a file it cannot read gives no probes; the ingest says why
                    item = None
                if item is None:
                    readers.remove(reader)
                    reader.close()
                elif not isinstance(item, InputError) and item.text.strip():
                    texts.append(" ".join(item.text.split()[:max_words]))
                if len(texts) >= count:
                    break
    finally:
        for reader in readers:  # open files of the readers not read to the end
            reader.close()
    return texts
