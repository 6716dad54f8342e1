"""What a user is told about each kind of bad input, and that the good records beside it survive.

One table: a real file per case (text, JSONL or Parquet, written as a user's tool would), read by
the real readers; for each case the exact location, the key words of the message and of the hint,
and the texts of the records that must still be read from the same file.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_inputs

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.records import InputError, Record

SETTINGS = InputSettings()
TYPE_HINT = ("the text must be a string", "convert it", "--text-field if another field")
BINARY_HINT = ("remove it from the input", "text/JSONL/Parquet")


@dataclass(frozen=True)
class Expect:
    """One expected error: its exact location and words its message and hint must contain."""

    location: str
    message: tuple[str, ...]
    hint: tuple[str, ...] = ()
    not_in_hint: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """A file written by ``write`` (or holding ``content``), the errors and good texts it gives."""

    name: str
    content: bytes | Callable[[Path], None]
    errors: list[Expect]
    texts: list[str] = field(default_factory=list)


def jsonl(*objects: object) -> bytes:
    return "".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects).encode()


def good(n: int) -> dict:
    return {"id": f"good-{n}", "text": f"good record number {n}"}


def parquet(table: pa.Table) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table, path)


def wrong_type(location: str, json_type: str) -> list[Expect]:
    # A field that exists with the wrong type is not fixed by --text-field alone: the hint says so.
    return [Expect(location, (f"text field 'text' is {json_type}", "not a string"), TYPE_HINT)]


CASES = [
    Case("null.jsonl", jsonl(good(1), {"id": "b", "text": None}, good(2)),
         [Expect("line 2", ("text field 'text' is null",), ("give the record text or remove it",),
                 ("--text-field",))],
         ["good record number 1", "good record number 2"]),
    Case("number.jsonl", jsonl({"id": "b", "text": 42}, good(1), {"id": "c", "text": 4.5}),
         wrong_type("line 1", "a number") + wrong_type("line 3", "a number"),
         ["good record number 1"]),
    Case("bool.jsonl", jsonl(good(1), {"id": "b", "text": True}),
         wrong_type("line 2", "a boolean"), ["good record number 1"]),
    Case("list.jsonl", jsonl(good(1), {"id": "b", "text": ["a", "b"]}),
         wrong_type("line 2", "a list"), ["good record number 1"]),
    Case("object.jsonl", jsonl(good(1), {"id": "b", "text": {"en": "hi"}}),
         wrong_type("line 2", "an object"), ["good record number 1"]),
    Case("missing.jsonl", jsonl(good(1), {"id": "b", "body": "words"}),
         [Expect("line 2", ("has no field 'text'", "(fields: id, body)"),
                 ("set --text-field to the field that holds the text",))],
         ["good record number 1"]),
    Case("not_object.jsonl", jsonl(["a", "list"], good(1)),
         [Expect("line 1", ("expected a JSON object, got a list",), ('"text"',))],
         ["good record number 1"]),
    Case("binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4,
         [Expect("", ("binary file (NUL byte at byte 8), not text",), BINARY_HINT, ("iconv",))]),
    Case("binary.jsonl", gzip.compress(jsonl(good(1), good(2)), mtime=0),
         [Expect("", ("binary file (NUL byte at byte 3), not text",), BINARY_HINT, ("iconv",))]),
    Case("controls.txt", bytes([0x01, 0x02, 0xFF, 0x10, 0x80, 0x41]) * 100,
         [Expect("", ("binary file (", "control bytes", "), not text"), BINARY_HINT, ("iconv",))]),
    Case("latin1.txt", "first line\nsecond caf\xe9 line\n".encode("latin-1"),
         [Expect("line 2 (byte 21)", ("invalid UTF-8",), ("iconv -f latin1",))]),
    Case("latin1.jsonl", jsonl(good(1)) + '{"id": "b", "text": "caf\xe9"}\n'.encode("latin-1"),
         [Expect("line 2", ("invalid UTF-8",), ("iconv -f latin1",))], ["good record number 1"]),
    Case("utf16.txt", "some text".encode("utf-16"),
         [Expect("", ("UTF-16 text, not UTF-8",), ("iconv -f utf-16",))]),
    Case("int_column.parquet", parquet(pa.table({"id": ["a", "b"], "text": [1, 2]})),
         [Expect("schema", ("column 'text' has type int64, expected string",),
                 ("cast the column to string", "--text-field"))]),
    Case("list_column.parquet", parquet(pa.table({"id": ["a"], "text": [["x", "y"]]})),
         [Expect("schema", ("column 'text' has type list<", "expected string"),
                 ("cast the column to string", "--text-field"))]),
    Case("large_string.parquet",
         parquet(pa.table({"text": pa.array(["large one", "large two"], pa.large_string())})),
         [], ["large one", "large two"]),
    Case("string_view.parquet",
         parquet(pa.table({"text": pa.array(["view one"], pa.string_view())})), [], ["view one"]),
    Case("dictionary.parquet",
         parquet(pa.table({"text": pa.array(["dict a", "dict b", "dict a"]).dictionary_encode(),
                           "id": ["1", "2", "3"]})),
         [], ["dict a", "dict b", "dict a"]),
    Case("null_row.parquet", parquet(pa.table({"id": ["a", "b"], "text": ["kept", None]})),
         [Expect("row 2", ("text field 'text' is null",), ("give the record text",))], ["kept"]),
    Case("duplicates.jsonl",
         jsonl({"id": "a", "text": "first a"}, {"id": "b", "text": "only b"},
               {"id": "a", "text": "second a"}, {"id": 7, "text": "seven"},
               {"id": "7", "text": "seven again"}),
         [Expect("line 3", ("id 'a' already used at line 1 of this file",),
                 ("give every record a unique id", "the later record was skipped")),
          Expect("line 5", ("id '7' already used at line 4 of this file",), ("unique id",))],
         ["first a", "only b", "seven"]),
    Case("no_ids.jsonl", jsonl({"text": "same"}, {"text": "same"}), [], ["same", "same"]),
    Case("duplicates.parquet",
         parquet(pa.table({"id": ["x", "y", "x"], "text": ["first x", "y", "second x"]})),
         [Expect("row 3", ("id 'x' already used at row 1 of this file",),
                 ("give every record a unique id", "the later record was skipped"))],
         ["first x", "y"]),
    Case("whitespace_text.jsonl", jsonl(good(1), {"id": "b", "text": " \n\t "}, good(2)),
         [], ["good record number 1", "good record number 2"]),
    Case("whitespace.txt", b"  \n\t \r\n",
         [Expect("", ("empty file", "nothing to index"), ("remove the file",))]),
    Case("unicode_whitespace.txt", "\u00a0\u3000\n\u2003".encode(),
         [Expect("", ("empty file (whitespace only)",), ("remove the file",))]),
    Case("scripts.jsonl",
         jsonl({"id": "ja", "text": "日本語の文章です。"}, {"id": "emoji", "text": "ship it 🚀🎉"},
               {"id": "he", "text": "שלום עולם"}, {"id": "ar", "text": "مرحبا بالعالم"}),
         [], ["日本語の文章です。", "ship it 🚀🎉", "שלום עולם", "مرحبا بالعالم"]),
    Case("scripts.txt", "漢字 and emoji 👩‍💻, مرحبا".encode(), [],
         ["漢字 and emoji 👩‍💻, مرحبا"]),
    Case("bom.jsonl", b"\xef\xbb\xbf" + jsonl(good(1)), [], ["good record number 1"]),
    Case("nul_escaped.jsonl", jsonl({"id": "n", "text": "before\u0000after"}), [],
         ["before\x00after"]),
    Case("nul_raw.jsonl", b'{"id": "n", "text": "raw\x00nul"}\n' + jsonl(good(1)), [],
         ["raw\x00nul", "good record number 1"]),
]


def read(path: Path | str) -> tuple[list[Record], list[InputError]]:
    return read_inputs(path, SETTINGS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_input_message(case: Case, tmp_path: Path) -> None:
    path = tmp_path / case.name
    if isinstance(case.content, bytes):
        path.write_bytes(case.content)
    else:
        case.content(path)
    records, errors = read(path)
    assert [r.text for r in records] == case.texts
    assert len(errors) == len(case.errors), [str(e) for e in errors]
    for error, expect in zip(errors, case.errors, strict=True):
        assert error.source.endswith(case.name)
        assert error.location == expect.location, str(error)
        assert all(word in error.message for word in expect.message), str(error)
        assert all(word in error.hint for word in expect.hint), str(error)
        assert not any(word in error.hint for word in expect.not_in_hint), str(error)


def test_binary_data_after_the_first_8_kb_of_a_jsonl_file_is_one_line_error(tmp_path: Path) -> None:
    """Past the sniffed head a binary line is reported at its line, the rest is still read."""
    lines = [good(n) for n in range(400)]
    path = tmp_path / "late.jsonl"
    path.write_bytes(jsonl(*lines[:300]) + b"\x00\xff\xfe\x01junk\n" + jsonl(*lines[300:]))
    records, errors = read(path)
    assert len(records) == 400
    assert [(e.location, e.message) for e in errors] == [
        ("line 301", "binary data (NUL byte at byte 0 of the line), not text")]
    assert "remove it from the input" in errors[0].hint
