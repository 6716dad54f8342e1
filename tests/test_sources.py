"""Reading inputs: every kind of bad input becomes a located error, and nothing else is lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_inputs

from vecpress.infra.settings import InputSettings
from vecpress.tasks.inputs.metadata import modified_time
from vecpress.tasks.inputs.records import InputError, Record
from vecpress.tasks.inputs.sources import discover, read_records

SETTINGS = InputSettings()


def _read(path: Path | str) -> tuple[list[Record], list[InputError]]:
    return read_inputs(path, SETTINGS)


def test_text_file_is_one_document(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title\n\nSome words here.")
    records, errors = _read(tmp_path / "a.md")
    assert errors == []
    assert [r.text for r in records] == ["# Title\n\nSome words here."]
    assert records[0].doc_id.endswith("/a.md")


def test_empty_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n")
    records, errors = _read(tmp_path / "empty.txt")
    assert records == []
    assert len(errors) == 1 and "empty" in errors[0].message
    assert errors[0].source.endswith("empty.txt")


def test_invalid_utf8_names_line_and_byte(tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("first line\nsecond caf\xe9 line\n".encode("latin-1"))
    records, errors = _read(tmp_path / "latin1.txt")
    assert records == []
    assert errors[0].message == "invalid UTF-8"
    assert errors[0].location == "line 2 (byte 21)"
    assert "iconv" in errors[0].hint


def test_malformed_jsonl_line_is_skipped_and_the_rest_read(tmp_path: Path) -> None:
    lines = [json.dumps({"id": "a", "text": "alpha text"}), "{not json", "",
             json.dumps({"id": "b", "body": "no text field"}), json.dumps(["a", "list"]),
             json.dumps({"id": 7, "text": "gamma text"})]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    records, errors = _read(tmp_path / "docs.jsonl")
    assert [(r.doc_id, r.text) for r in records] == [("a", "alpha text"), ("7", "gamma text")]
    assert [e.location for e in errors] == ["line 2", "line 4", "line 5"]
    assert "malformed JSON" in errors[0].message
    assert "'text'" in errors[1].message and "--text-field" in errors[1].hint


def test_configurable_fields(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps({"key": "k1", "body": "hello there"}) + "\n")
    settings = InputSettings(id_field="key", text_field="body")
    files, _ = discover([str(tmp_path)], settings)
    records = list(read_records(files[0], settings))
    assert records == [Record("k1", "hello there", files[0].url,
                              json.dumps({"file_bytes": 37, "file_modified": files[0].modified_at},
                                         separators=(",", ":")))]


def test_parquet_without_text_column(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["x"], "content": ["words"]}), tmp_path / "t.parquet")
    records, errors = _read(tmp_path / "t.parquet")
    assert records == []
    assert errors[0].location == "schema"
    assert "no column 'text'" in errors[0].message and "content" in errors[0].message


def test_parquet_rows_are_records(tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": ["x", "y"], "text": ["one doc", "two doc"]}),
                   tmp_path / "t.parquet")
    records, errors = _read(tmp_path / "t.parquet")
    assert errors == [] and [r.doc_id for r in records] == ["x", "y"]


def test_directories_are_walked_recursively_and_unknown_types_ignored(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "n.txt").write_text("nested")
    (tmp_path / "top.md").write_text("top")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    files, errors = discover([str(tmp_path)], SETTINGS)
    assert errors == []
    assert sorted(Path(f.url).name for f in files) == ["n.txt", "top.md"]


def test_missing_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    files, errors = discover([str(tmp_path / "nope")], SETTINGS)
    assert files == [] and "no such file" in errors[0].message


def test_fsspec_urls(tmp_path: Path) -> None:
    with fsspec.open("memory://bucket/docs.jsonl", "w") as fh:
        fh.write(json.dumps({"id": "m", "text": "from memory"}) + "\n")
    records, errors = _read("memory://bucket/*.jsonl")
    assert errors == [] and records[0].text == "from memory"
    # Sources keep their protocol, so ids stay distinct from local paths and re-openable.
    assert records[0].source.startswith("memory://")
    assert records[0].source.endswith("/bucket/docs.jsonl")


def test_jsonl_fields_beyond_id_and_text_are_the_records_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    lines = [{"id": "a", "text": "alpha text", "team": "t7", "year": 2021, "tags": ["x"]},
             {"id": "b", "text": "beta text"},
             {"id": "c", "text": "gamma text", "score": float("nan")},
             {"id": "d", "text": "delta text", "blob": "y" * 70_000},
             {"id": "e", "text": "epsilon text", "file_bytes": "its own"}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    os.utime(path, (1_700_000_000, 1_700_000_000.5))
    records, errors = _read(path)
    # Every record also gets its file's size and modification time; its own fields win.
    stamp = {"file_bytes": path.stat().st_size, "file_modified": "2023-11-14T22:13:20Z"}
    assert [(r.doc_id, r.metadata) for r in records] == [
        ("a", json.dumps(stamp | {"tags": ["x"], "team": "t7", "year": 2021}, sort_keys=True,
                         separators=(",", ":"))),
        ("b", json.dumps(stamp, separators=(",", ":"))),
        ("e", json.dumps(stamp | {"file_bytes": "its own"}, separators=(",", ":")))]
    # Values Milvus's JSON field cannot hold: the record is skipped, with the field and line.
    assert [(e.location, e.message.split(" holds")[0].split(" is ")[0]) for e in errors] == [
        ("line 3", "metadata field 'score'"), ("line 4", "metadata")]
    assert "64 KiB" in errors[1].hint and "--metadata-fields" in errors[1].hint
    # Only the named fields; [] keeps none.
    only_team, _ = read_inputs(path, InputSettings(metadata_fields=["team"]))
    assert only_team[0].metadata == '{"team":"t7"}'
    none, errors = read_inputs(path, InputSettings(metadata_fields=[]))
    assert [r.metadata for r in none] == [None] * 5 and errors == []
    with_time, _ = read_inputs(path, InputSettings(metadata_fields=["team", "file_modified"]))
    assert [r.metadata for r in with_time[:2]] == [
        '{"file_modified":"2023-11-14T22:13:20Z","team":"t7"}',
        '{"file_modified":"2023-11-14T22:13:20Z"}']


def test_modification_times_of_every_backend_become_iso_utc() -> None:
    import datetime as dt

    assert modified_time({"mtime": 1_700_000_000.9}) == "2023-11-14T22:13:20Z"
    assert modified_time({"ETag": '"abc"', "LastModified": dt.datetime(
        2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))}) == "2024-05-01T12:00:00Z"
    assert modified_time({"updated": "2024-05-01T12:00:00.123Z"}) == "2024-05-01T12:00:00Z"
    assert modified_time({"updated": "yesterday", "created": 0}) == "1970-01-01T00:00:00Z"
    assert modified_time({"size": 3}) == ""


def test_parquet_columns_beyond_id_and_text_are_metadata_dates_as_iso_text(tmp_path: Path
                                                                           ) -> None:
    import datetime as dt

    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["alpha text", "beta text"],
                             "when": [dt.datetime(2024, 5, 1, 12, 0), None],
                             "raw": [b"\x00", b"\x01"]}), path)
    records, errors = read_inputs(path, InputSettings(metadata_fields=["when"]))
    assert errors == []
    assert [r.metadata for r in records] == ['{"when":"2024-05-01T12:00:00"}', '{"when":null}']
    # Bytes have no JSON type: each row is reported with the column's name.
    records, errors = _read(path)
    assert records == [] and [e.location for e in errors] == ["row 1", "row 2"]
    assert "metadata field 'raw' holds a bytes value" in errors[0].message


def test_front_matter_of_a_text_file_is_its_metadata(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("---\ntitle: Rotating logs\nteam: ops\nyear: 2021\n"
                                   "published: 2021-05-01\n---\n# Rotating logs\n\nUse logrotate.\n")
    (tmp_path / "b.md").write_text("---\n[not, a, mapping]\n---\nBody.\n")
    (tmp_path / "c.md").write_text("---\nkey: [unclosed\n---\nBody.\n")
    (tmp_path / "d.md").write_text("--- not front matter, a rule\n\nBody.\n")
    records, errors = _read(tmp_path)
    by_name = {Path(r.source).name: r for r in records}
    assert by_name["a.md"].text == "# Rotating logs\n\nUse logrotate.\n"
    assert json.loads(by_name["a.md"].metadata) == {
        "title": "Rotating logs", "team": "ops", "year": 2021, "published": "2021-05-01",
        "file_bytes": (tmp_path / "a.md").stat().st_size,
        "file_modified": json.loads(by_name["a.md"].metadata)["file_modified"]}
    d_stamp = json.loads(by_name["d.md"].metadata)  # no front matter: the file's keys only
    assert sorted(d_stamp) == ["file_bytes", "file_modified"]
    assert by_name["d.md"].text.startswith("--- not")
    located = {Path(e.source).name: (e.location, e.message) for e in errors}
    assert located["b.md"] == ("line 1", "front matter must be a YAML mapping of keys to values")
    assert located["c.md"][0] == "line 3" and "not valid YAML" in located["c.md"][1]


# Lines where orjson and the standard parser differ, or either fails: the JSONL fast path must give
# exactly what json.loads(strict=False) gives (its value or its error's message and column).
_TRICKY_LINES = [
    '{"id": 123456789012345678901234567890, "text": "x"}', '{"id": -9999999999999999999}',
    '{"id": 18446744073709551615}', '{"x": 1e309}', '{"x": NaN}', '{"x": -Infinity}',
    '{"x": "\\ud800"}', '{"x": "a\tb\x00c"}', '{"a": 1, "a": 2}', '\ufeff{"a": 1}', '{"a": 1}x',
    '{"a": ', '[1, 2]', '"s"', '{"x": -0.0, "y": 1E2, "z": 1.5e-320, "w": 0.1}', '{"t": "é\u2028"}',
    "{'single': 1}", '{"deep": ' + "[" * 2000 + "]" * 2000 + "}",
]


def _outcome(parse: object, line: str) -> tuple[str, str]:
    try:
        return "value", repr(parse(line))  # type: ignore[operator]
    except json.JSONDecodeError as exc:
        return "error", f"{exc.msg} {exc.colno}"
    except RecursionError:
        return "error", "recursion"


def test_the_jsonl_fast_path_parses_exactly_as_json_loads() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from vecpress.tasks.inputs.sources import parse_json_line

    def standard(line: str) -> object:
        return json.loads(line, strict=False)

    for line in _TRICKY_LINES:
        assert _outcome(parse_json_line, line) == _outcome(standard, line), line

    values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12)

    @settings(max_examples=300, deadline=None)
    @given(values, st.sampled_from(["", " ", "x", "}", "\t"]))
    def same(value: object, tail: str) -> None:
        line = json.dumps(value, ensure_ascii=False) + tail
        assert _outcome(parse_json_line, line) == _outcome(standard, line)

    same()


def test_an_eval_queries_file_over_its_bound_is_refused_where_reading_reaches_it(
        tmp_path: Path) -> None:
    """``inputs.max_eval_queries`` bounds what is read: a file with one query more is refused,
    naming the setting, and nothing after that query is read (the malformed line that follows
    is never reached); at the bound it is read whole."""
    from vecpress.tasks.inputs.eval_queries import read_eval_queries

    bound = InputSettings(max_eval_queries=1000, id_field="key", text_field="body")
    lines = [json.dumps({"id": f"q{i}", "text": f"query number {i}"}) for i in range(1001)]
    path = tmp_path / "queries.jsonl"
    path.write_text("\n".join([*lines, "{never read"]) + "\n")
    with pytest.raises(ValueError, match=r"more than 1,000 queries \(inputs.max_eval_queries\)"):
        read_eval_queries(str(path), bound)
    path.write_text("\n".join(lines[:1000]) + "\n")
    assert len(read_eval_queries(str(path), bound)) == 1000  # id/text, whatever the sources use
