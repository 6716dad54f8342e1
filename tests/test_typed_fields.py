"""Typed metadata fields (``metadata.fields``, ``--typed-fields``): declared keys get Milvus
scalar fields with indexes; values that do not fit are found where records are read; filters
name them directly. The whole path (ingest, incremental runs, reindex, search) is in
test_pipeline_e2e.py; these are its parts, against a real Milvus Lite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from vecpress.infra.metadata_settings import MetadataSettings, parse_typed_fields
from vecpress.infra.milvus import MilvusSchemaError, MilvusStore
from vecpress.infra.settings import MilvusSettings, Settings
from vecpress.tasks.collection.typed_columns import TypedValueError, typed_columns
from vecpress.tasks.inputs.records import Record
from vecpress.tasks.inputs.typed_values import check_record, typed_problem
from vecpress.tasks.search.filters import translate


def test_declarations_parse_and_bad_ones_say_what_is_wrong() -> None:
    assert parse_typed_fields(" team:varchar, year:INT64 ,") == {"team": "varchar", "year": "int64"}
    with pytest.raises(ValueError, match="'team' in --typed-fields is not name:type"):
        parse_typed_fields("team")
    assert Settings(metadata={"fields": {"year": "int64", "team": "varchar"}}).metadata.fields \
        == {"team": "varchar", "year": "int64"}  # name order: the schema's field order
    with pytest.raises(ValidationError, match="partition key 'team' must be a varchar or int64 "
                                              "typed field: declare it too"):
        MetadataSettings(fields={"team": "bool"}, partition_key="team")
    for fields, message in (({"text": "varchar"}, "has the name of a passage field"),
                            ({"9lives": "bool"}, "not a valid Milvus field name"),
                            ({"team": "string"}, "Input should be 'varchar', 'int64'")):
        with pytest.raises(ValidationError, match=message):
            MetadataSettings(fields=fields)  # type: ignore[arg-type]


def test_values_that_do_not_fit_their_type_are_named_with_the_record() -> None:
    declared = MetadataSettings(fields={"team": "varchar", "year": "int64", "score": "double",
                                        "ok": "bool"}, varchar_max_bytes=8)
    assert typed_problem({"team": "t7", "year": 2020, "score": 1, "ok": False}, declared) is None
    assert typed_problem({"team": None, "other": [1]}, declared) is None  # absent or null: empty
    for fields, message in (
            ({"year": True}, "'year' holds the boolean true, but metadata.fields declares it "
                             "int64"),
            ({"year": 1.5}, "holds the number 1.5"),
            ({"year": 2**63}, "outside int64"),
            ({"score": "1"}, "'score' holds the string \"1\""),
            ({"ok": 1}, "'ok' holds the number 1"),
            ({"team": "much too long"}, "13 bytes, over the 8 of metadata.varchar_max_bytes")):
        problem = typed_problem(fields, declared)
        assert problem is not None and message in problem, (fields, problem)
    record = Record("doc-3", "text", "s3://b/f.jsonl", json.dumps({"year": "2020"}))
    error = check_record(record, declared)
    assert error is not None and (error.source, error.location) == ("s3://b/f.jsonl", "record doc-3")
    assert check_record(record, MetadataSettings()) is None  # nothing declared: nothing checked


def test_typed_columns_come_out_of_the_metadata_json_with_empty_values_for_missing_keys() -> None:
    metadata = pa.array(['{"team":"t1","year":2020,"tags":["a"]}', "{}", '{"team":null,"score":3}',
                         '{"ok":true,"score":2.5,"year":-5}'])
    columns = typed_columns(metadata.to_pylist(), {"team": "varchar", "year": "int64",
                                                   "score": "double", "ok": "bool"}, "part-0")
    assert {k: v.to_pylist() for k, v in columns.items()} == {
        "team": ["t1", "", "", ""], "year": [2020, 0, 0, -5], "score": [0.0, 0.0, 3.0, 2.5],
        "ok": [False, False, False, True]}
    # A value declared after the shard was read (a reindex with new --typed-fields) that does
    # not fit: the shard and the passage are named, and what to do.
    with pytest.raises(TypedValueError, match=r"part-0, passage 2: metadata field 'year' holds "
                                              r"the string \"x\".*--recreate"):
        typed_columns(['{"year":1}', '{"year":"x"}'], {"year": "int64"}, "part-0")


def test_filters_name_typed_fields_directly_and_other_keys_through_the_json_field() -> None:
    found = translate('team in ["a", "b"] and year >= 2020 and rare == true', True, 4096,
                      frozenset({"team", "year"}))
    assert found is not None
    assert found.expression == 'team in ["a", "b"] and year >= 2020 and metadata["rare"] == true'
    assert found.metadata_keys == ("rare",)  # only JSON keys are checked for existence


def test_a_lite_collection_gets_typed_indexed_fields_and_keeps_them(tmp_path: Path) -> None:
    store = MilvusStore(MilvusSettings(uri=str(tmp_path / "m.db")))
    declared = MetadataSettings(fields={"team": "varchar", "year": "int64"})
    try:
        store.ensure_collection("c", 8, "codec-0", declared)
        assert store.typed_fields("c") == {"team": "varchar", "year": "int64"}
        assert set(store.client.list_indexes("c")) == {"team", "year"}  # scalar INVERTED indexes
        rows = [{"pk": i, "doc_id": str(i), "chunk": 0, "text": "t", "source": "s",
                 "codec_id": "codec-0", "metadata": json.dumps({"team": f"t{i % 3}"}),
                 "team": f"t{i % 3}", "year": 2000 + i, "vector": np.full(8, i, np.float32)}
                for i in range(30)]
        assert store.upsert("c", rows) == 30
        store.flush("c")
        store.load("c")
        assert store.count_matching("c", 'team == "t1" and year >= 2010') == 7
        # Another declaration for the same collection is refused, saying how to change it.
        with pytest.raises(MilvusSchemaError, match=r"has the typed fields team:varchar, "
                                                    r"year:int64 but .* declares team:bool"):
            store.ensure_collection("c", 8, "codec-0", MetadataSettings(fields={"team": "bool"}))
        # Not declared by the caller: a run keeps the fields of the build it writes or the one
        # serving; declared as none ({}), none.
        assert store.resolve_typed(MetadataSettings(), "new", "c").fields == declared.fields
        assert store.resolve_typed(MetadataSettings(fields={}), "new", "c").fields == {}
        assert store.resolve_typed(MetadataSettings(), "new", "").fields == {}
        with pytest.raises(MilvusSchemaError, match="Milvus Lite has no partitions"):
            store.ensure_collection("keyed", 8, "codec-0", MetadataSettings(
                fields={"team": "varchar"}, partition_key="team"))
    finally:
        store.close()


class _CountingStore(MilvusStore):
    """The real store, counting the queries a filter's plan makes."""

    calls: list[str]

    def count_matching(self, name: str, expression: str) -> int:
        self.calls.append("count")
        return super().count_matching(name, expression)

    def pks_where(self, name: str, expression: str, limit: int) -> np.ndarray:
        self.calls.append(f"pks<={limit}")
        return super().pks_where(name, expression, limit)


def test_a_small_filter_costs_one_query_and_a_large_ones_count_is_remembered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Milvus Lite counts a filter's matches slowly (it materialises them): a filter that keeps
    few rows is planned from its keys alone, and a large one's count is reused for a while."""
    from types import SimpleNamespace

    from vecpress.tasks.search import filter_counts
    from vecpress.tasks.search.filter_counts import FilterCounts
    from vecpress.tasks.search.filters import plan

    store = _CountingStore(MilvusSettings(uri=str(tmp_path / "m.db"),
                                          search_consistency="Strong"))
    store.calls = []
    try:
        store.ensure_collection("c", 8, "codec-0", MetadataSettings(fields={"team": "varchar"}))
        store.upsert("c", [{"pk": i, "doc_id": str(i), "chunk": 0, "text": "t", "source": "s",
                            "codec_id": "codec-0", "metadata": "{}", "team": f"t{i % 4}",
                            "vector": np.full(8, i, np.float32)} for i in range(40)])
        store.flush("c")
        store.load("c")
        counts = FilterCounts(size=8, ttl_s=60)

        def planned(expression: str, exact_rows: int) -> tuple:
            store.calls = []
            found = translate(expression, True, 4096, frozenset({"team"}))
            assert found is not None
            made = plan(store, "c", found, 4, exact_rows, set(), counts)
            exact = None if made.exact_pks is None else made.exact_pks.tolist()
            return made.matches, exact, made.nprobe, store.calls

        assert planned('team == "t1"', 10) == (10, list(range(1, 40, 4)), 4, ["pks<=11"])
        assert planned('team == "t9"', 10) == (0, None, 4, ["pks<=11"])
        # 20 of 40 rows, over exact_rows: counted once, probes doubled; then from memory.
        large = (20, None, 8, ["pks<=10", "count", "count"])
        assert planned('team in ["t1", "t2"]', 9) == large
        assert planned('team in ["t1", "t2"]', 9) == (20, None, 8, [])
        assert len(counts) == 1
        clock = [0.0]  # the entries' age is the test's to set, not a stall's on a busy machine
        monkeypatch.setattr(filter_counts, "time", SimpleNamespace(monotonic=lambda: clock[0]))
        expiring = FilterCounts(size=1, ttl_s=60)
        expiring.put("c", "a", 20, 40)
        expiring.put("c", "b", 30, 40)  # one entry at most: "a" is dropped
        clock[0] = 59.9
        assert expiring.get("c", "a") is None and expiring.get("c", "b") == (30, 40)
        clock[0] = 60.0
        assert expiring.get("c", "b") is None and len(expiring) == 0
        # exact_rows 0: no keys fetched, counted as before.
        assert planned('team == "t1"', 0)[3] == ["count", "count"]
    finally:
        store.close()
