"""Milvus Lite written in column operations (``infra/lite_arrow.py``): a shard's table goes into
the engine's log as one Arrow batch, and its flush takes the live rows in one ``take``. Both must
store exactly what Lite's own row paths store. A filter is counted on the engine's mask
(``infra/lite_count.py``), as many as Lite's own query returns."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from milvus_lite.storage.memtable import MemTable

from vecpress.infra import lite_count
from vecpress.infra.lite_engine import LiteError
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.milvus import MilvusStore, RefusedRow
from vecpress.infra.milvus_fields import as_columns
from vecpress.infra.settings import MilvusSettings

FIELDS = ["pk", "doc_id", "chunk", "text", "source", "codec_id", "metadata", "year", "vector"]


@pytest.fixture()
def store(tmp_path):
    s = MilvusStore(MilvusSettings(uri=str(tmp_path / "m.db"), insert_batch_bytes=1 << 16))
    yield s
    s.close()


def _table(vectors: np.ndarray, offset: int = 0, text: str = "passage") -> pa.Table:
    """Rows as ``loading.shard_table`` gives them: metadata as JSON text, the vector a list."""
    n, dim = vectors.shape
    pks = np.arange(offset, offset + n)
    return pa.table({
        "pk": pa.array(pks), "doc_id": [f"d{i}" for i in pks],
        "chunk": pa.array(pks % 3, pa.int32()), "text": [f"{text} {i} ✓ é" * (i % 5) for i in pks],
        "source": ["s.jsonl"] * n, "codec_id": ["c"] * n,
        "metadata": [json.dumps({"team": f"t{i % 4}", "n": int(i), "tags": ["a", "中"]},
                                ensure_ascii=False, separators=(",", ":")) if i % 3 else "{}"
                     for i in pks],
        "year": pa.array(2000 + pks % 30),
        "vector": pa.ListArray.from_arrays(np.arange(0, n * dim + 1, dim, dtype=np.int32),
                                           pa.array(vectors.ravel()))})


def test_a_table_written_in_columns_reads_back_as_its_rows_sent_through_pymilvus(
        store: MilvusStore) -> None:
    vectors = np.random.default_rng(3).standard_normal((300, 16)).astype(np.float32)
    typed = MetadataSettings(fields={"year": "int64"})
    for name in ("columns", "pymilvus"):
        store.ensure_collection(name, 16, "c", typed)
    table = _table(vectors)
    assert store._lite is not None
    assert len(store._lite.insert_table("columns", table.slice(0, 100))) == 0  # all taken there
    assert store.upsert_table("columns", table.slice(100)) == 200
    schema = store.client.describe_collection("pymilvus")
    rows = table.to_pylist()
    store.client.upsert_columns("pymilvus", as_columns(rows, schema["fields"]), schema)
    pks = list(range(300))
    written = store.rows("columns", pks, FIELDS)
    assert written == store.rows("pymilvus", pks, FIELDS)
    assert np.array_equal(np.array([written[i]["vector"] for i in pks], np.float32), vectors)
    assert written[5]["metadata"] == {"team": "t1", "n": 5, "tags": ["a", "中"]}
    assert written[3]["metadata"] == {}

    # Written again after a flush, the same pks replace their rows, in the segment and the log.
    store.flush("columns")
    again = _table(vectors[:120][::-1].copy(), text="changed")
    assert store.upsert_table("columns", again) == 120
    assert store.count("columns") == 300
    assert store.rows("columns", [0], ["text", "vector"])[0] == {
        "pk": 0, "text": "", "vector": pytest.approx(vectors[119].tolist())}
    assert store.rows("columns", [4], ["text"])[4]["text"] == "changed 4 ✓ é" * 4
    where = 'metadata["team"] == "t1" and year >= 2010'
    counts = [len(store.client.query(n, filter=where, output_fields=["pk"])) for n in
              ("columns", "pymilvus")]
    assert counts[0] == counts[1] > 0


def test_rows_lite_would_refuse_go_through_its_row_path_and_are_quarantined(
        store: MilvusStore) -> None:
    store.ensure_collection("c", 8, "c", MetadataSettings(fields={"year": "int64"}))
    table = _table(np.ones((10, 8), np.float32))
    texts = [("x" * 70_000 if i in (3, 7) else "ok") for i in range(10)]
    table = table.set_column(table.column_names.index("text"), "text", pa.array(texts))
    refused: list[RefusedRow] = []
    assert store.upsert_table("c", table, refused) == 8
    assert [r.row["pk"] for r in refused] == [3, 7]
    assert all("exceeds max" in r.reason for r in refused)
    assert store.count("c") == 8
    # Without a field, the rows go through Lite's row path: an upsert of a stored pk keeps the
    # stored value, and a new pk is refused with Lite's reason.
    assert store.upsert_table("c", table.slice(0, 1).drop_columns(["codec_id"])) == 1
    assert store.rows("c", [0], ["codec_id"])[0]["codec_id"] == "c"
    with pytest.raises(Exception, match="codec_id"):
        store.upsert_table("c", _table(np.ones((2, 8), np.float32), offset=100)
                           .drop_columns(["codec_id"]))
    short = table.slice(0, 3).set_column(8, "vector", pa.array([[1.0] * 4] * 3))
    with pytest.raises(Exception, match="dim"):  # another dimension: Lite's own refusal
        store.upsert_table("c", short)


def test_a_flush_in_columns_writes_the_table_lite_s_own_flush_writes(store: MilvusStore) -> None:
    """The memtable's live rows (the newest of each pk, across batches from both write paths)
    flushed by the replacement and by Lite's own method: the same table, schema and values."""
    vectors = np.random.default_rng(4).standard_normal((500, 16)).astype(np.float32)
    store.ensure_collection("c", 16, "c", MetadataSettings(fields={"year": "int64"}))
    store.upsert_table("c", _table(vectors))
    store.upsert_table("c", _table(vectors[:50] * 2, offset=100, text="newer"))
    store.upsert("c", _table(vectors[:30], offset=400).to_pylist())  # Lite's row path
    memtable = store._lite.db.get_collection("c")._memtable
    replaced = MemTable._build_data_table.replaced  # installed when the engine opened
    ours = memtable.flush(known_partitions=["_default"])["_default"][0]
    MemTable._build_data_table = replaced
    try:
        lites = memtable.flush(known_partitions=["_default"])["_default"][0]
    finally:
        from vecpress.infra import lite_arrow
        lite_arrow.flush_in_columns()
    assert ours.num_rows == lites.num_rows == 500
    assert ours.schema.equals(lites.schema, check_metadata=True) and ours.equals(lites)
    store.flush("c")
    assert store.rows("c", [100], ["text"])[100]["text"] == "newer 100 ✓ é" * 0
    assert store.rows("c", [104], ["text"])[104]["text"] == "newer 104 ✓ é" * 4


def test_a_filter_counted_on_the_engines_mask_equals_lites_own_query(store: MilvusStore) -> None:
    """``lite_count``: the newest version of each key, deleted keys left out, in segments and in
    the log, exactly as many as Lite's ``query`` returns."""
    store.ensure_collection("n", 8, "c", MetadataSettings(fields={"year": "int64"}))
    vectors = np.random.default_rng(5).standard_normal((200, 8)).astype(np.float32)
    store.upsert_table("n", _table(vectors))
    store.flush("n")  # a segment; then newer versions of 50 keys and 20 new keys in the log
    store.upsert_table("n", _table(vectors[:50], text="new"))
    store.upsert_table("n", _table(vectors[:20], offset=300))
    store.delete("n", [1, 2, 3, 301])
    assert store._lite is not None
    engine = store._lite
    collection = engine.db.get_collection("n")
    for where in ('text like "new%"', "year >= 2010", 'metadata["team"] == "t1"',
                  'exists metadata["team"]', "pk in [1, 2, 4, 300, 301]",
                  'chunk == 0 and year < 2005', "pk < 0", ""):
        expected = len(collection.query(where, output_fields=["pk"]))
        assert lite_count.count_matching(collection, where) == expected, where
        assert store.count_matching("n", where) == expected, where
    assert lite_count.count_matching(collection, "") == 200 + 20 - 4
    # keys 0-49 rewritten, their text empty where key % 5 == 0; keys 1, 2 and 3 deleted
    assert store.count_matching("n", 'text like "new%"') == 40 - 3
    assert store.count_matching("n", "pk in [1, 2, 4, 300, 301]") == 2
    with pytest.raises(LiteError):
        store.count_matching("n", "year >>> 3")


def test_the_keys_an_unknown_key_error_lists_come_from_the_whole_collection(
        store: MilvusStore) -> None:
    """Keys are hashes, so rows sampled across key ranges come from every file: here only the
    last 200 of 2,200 rows written have metadata, as a corpus whose first files have no front
    matter. The first 1,000 rows in the engine's order (what was listed before) have none."""
    rng = np.random.default_rng(5)
    n = 2200
    table = _table(rng.standard_normal((n, 16)).astype(np.float32))
    table = table.set_column(0, "pk", pa.array(rng.choice(1 << 62, n, replace=False) * 2))
    meta = ["{}"] * 2000 + [json.dumps({"team": f"t{i % 3}"}) for i in range(200)]
    table = table.set_column(table.column_names.index("metadata"), "metadata", pa.array(meta))
    store.ensure_collection("c", 16, "c")
    assert store.upsert_table("c", table.drop_columns(["year"])) == n
    assert store._lite is not None
    first = store._lite.query("c", "", ["metadata"], "metadata", 1000)
    assert not any(row["metadata"] for row in first)
    assert store.metadata_keys("c") == {"team"}
