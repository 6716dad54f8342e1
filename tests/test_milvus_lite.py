"""Milvus Lite through the store: idempotent upserts, index, search, schema checks."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from keepalive_probe import keepalive_result

from vecpress.infra import lite_lists
from vecpress.infra.index_plan import plan_index, replan
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.milvus import MilvusSchemaError, MilvusStore
from vecpress.infra.milvus_fields import as_columns
from vecpress.infra.milvus_reads import MilvusReads, milvus_errors
from vecpress.infra.settings import MilvusSettings


@pytest.fixture()
def store(tmp_path):
    s = MilvusStore(MilvusSettings(uri=str(tmp_path / "m.db"), insert_batch_bytes=1 << 16))
    yield s
    s.close()


def _rows(vectors: np.ndarray, offset: int = 0) -> list[dict]:
    return [{"pk": offset + i, "doc_id": f"d{offset + i}", "chunk": 0, "text": f"t{i}",
             "source": "s", "codec_id": "c", "vector": v} for i, v in enumerate(vectors)]


def test_upsert_is_idempotent_and_search_finds_nearest(store: MilvusStore) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((600, 32)).astype(np.float32)
    store.ensure_collection("c1", 32, "c")
    assert store.upsert("c1", _rows(vectors)) == 600
    store.upsert("c1", _rows(vectors[:100]))  # the same primary keys again
    assert store.count("c1") == 600
    index = store.ensure_index("c1", plan_index(store.settings, 600, 8, 8))
    assert index["index_type"] == "IVF_SQ8"  # Lite has no IVF_PQ; auto picks SQ8
    hits = store.search("c1", vectors[[5, 77]], 3)
    best = [h[0][0] for h in hits]
    assert [store.rows("c1", best)[pk]["doc_id"] for pk in best] == ["d5", "d77"]


def test_rows_given_to_the_engine_read_back_as_those_sent_through_pymilvus(
        store: MilvusStore) -> None:
    """Lite upserts go to the engine in this process (``infra/lite_engine.py``), not through
    pymilvus's gRPC request: the same rows read back the same, vectors bit for bit."""
    vectors = np.random.default_rng(1).standard_normal((300, 16)).astype(np.float32)
    rows = [row | {"metadata": json.dumps({"team": f"t{i % 3}", "n": i, "tags": ["a", "é"]})
                   if i % 2 else None, "text": f"passage {i} ✓ " * (i % 7)}
            for i, row in enumerate(_rows(vectors))]
    for row in rows[-20:]:  # a caller's lists and dicts are taken as pymilvus takes them
        row |= {"vector": row["vector"].tolist(), "metadata": {"given": "as a dict"}}
    for name in ("engine", "pymilvus"):
        store.ensure_collection(name, 16, "c")
    assert store.upsert("engine", rows) == 300
    schema = store.client.describe_collection("pymilvus")
    store.client.upsert_columns("pymilvus", as_columns(rows, schema["fields"]), schema)
    fields = ["pk", "doc_id", "chunk", "text", "source", "codec_id", "metadata", "vector"]
    engine = store.rows("engine", list(range(300)), fields)
    assert engine == store.rows("pymilvus", list(range(300)), fields)
    assert np.array_equal(np.array([engine[i]["vector"] for i in range(300)], np.float32), vectors)
    assert engine[3]["metadata"] == {"team": "t0", "n": 3, "tags": ["a", "é"]}
    assert engine[2]["metadata"] == {} and engine[299]["metadata"] == {"given": "as a dict"}


def test_the_search_path_reads_the_engine_as_pymilvus_reads_it(store: MilvusStore) -> None:
    """On Lite the search path's reads go to the engine in this process, not through pymilvus's
    gRPC server (``LiteEngine.search``/``get``/``query``/``count``): each answers as pymilvus
    does, and a store that only reads makes no pymilvus client."""
    vectors = np.random.default_rng(2).standard_normal((400, 16)).astype(np.float32)
    rows = [row | {"metadata": json.dumps({"team": f"t{i % 4}", "n": i}), "year": 2000 + i % 30}
            for i, row in enumerate(_rows(vectors))]
    store.ensure_collection("c", 16, "c", MetadataSettings(fields={"year": "int64"}))
    store.upsert("c", rows)
    store.ensure_index("c", plan_index(store.settings, 400, 8, 8))
    store.ensure_collection("ip", 16, "c")  # a dot-product model's index: IP comes back negated
    store.upsert("ip", _rows(vectors))
    store.ensure_index("ip", plan_index(store.settings, 400, 8, 8, metric="IP"))
    reader = MilvusReads(store.settings)  # the same engine, as a search process opens it
    try:
        reader.load("c")
        expression = 'metadata["team"] == "t1" and year >= 2010'
        params = {"metric_type": "L2", "params": {"nprobe": 16, "ef": 64}}
        for where in ("", expression):
            found = store.client.search("c", data=list(vectors[:5]), limit=10, filter=where,
                                        search_params=params, output_fields=[],
                                        anns_field="vector")
            assert reader.search("c", vectors[:5], 10, 16, where) == [
                [(h["pk"], h["distance"]) for h in hits] for hits in found]
            count = store.client.query("c", filter=where, output_fields=["count(*)"])
            assert reader.count_matching("c", where) == count[0]["count(*)"]
        found = store.client.search("ip", data=list(vectors[:5]), limit=10, output_fields=[],
                                    search_params={"metric_type": "IP", "params": params["params"]})
        assert reader.search("ip", vectors[:5], 10, 16, metric="IP") == [
            [(h["pk"], -h["distance"]) for h in hits] for hits in found]
        fields = ["pk", "doc_id", "chunk", "text", "metadata", "year"]
        wanted = [3, 7, 150, 399, 1000]  # 1000 is not there: left out
        pymilvus = {r["pk"]: r for r in store.client.query("c", filter=f"pk in {wanted}",
                                                           output_fields=fields)}
        assert reader.rows("c", wanted, fields) == pymilvus and len(pymilvus) == 4
        assert reader.rows("c", wanted, fields, where=expression) == {
            pk: row for pk, row in pymilvus.items()
            if row["metadata"]["team"] == "t1" and row["year"] >= 2010}
        assert reader.rows("c", [5], ["metadata"])[5]["metadata"] == {"team": "t1", "n": 5}
        assert list(reader.pks_where("c", expression, 1000)) == sorted(
            int(r["pk"]) for r in store.client.query("c", filter=expression, output_fields=["pk"]))
        assert reader.count("c") == store.count("c") == 400
        assert reader.metadata_keys("c") == {"team", "n"}
        assert reader.typed_fields("c") == {"year": "int64"} and reader.has_field("c", "metadata")
        with pytest.raises(milvus_errors(), match="year ==== 3"):
            reader.count_matching("c", "year ==== 3")
        assert reader._client is None  # nothing above went through pymilvus
    finally:
        reader.close()


def test_dimension_mismatch_is_refused(store: MilvusStore) -> None:
    store.ensure_collection("c2", 32, "c")
    with pytest.raises(MilvusSchemaError, match="32-d vectors but the codec produces 64-d"):
        store.ensure_collection("c2", 64, "c")


def test_server_uri_picks_ivf_pq() -> None:
    settings = MilvusSettings(uri="http://localhost:19530")
    assert not settings.is_lite
    assert plan_index(MilvusSettings(), 10_000, 16, 8).index_type == "IVF_SQ8"
    plan = plan_index(settings, 10_000, 16, 8)
    # 4·√10,000 = 400 lists would train on 25 points each: capped at 10,000 / 39 = 256.
    assert (plan.index_type, plan.params) == ("IVF_PQ", {"nlist": 256, "m": 16, "nbits": 8})
    # Up to 50,000 rows a search scans every list; PQ codes rank coarsely: 16 candidates a result.
    assert (plan.nprobe, plan.rescore_factor) == (256, 16)
    large = plan_index(settings, 1_000_000, 16, 8)
    # 4,000 lists of 250: 200 lists scan 50,000 vectors, but at least a tenth (400) are probed.
    assert (large.nlist, large.nprobe) == (4000, 400)
    assert plan_index(settings, 100, 16, 8).nlist == 2
    assert plan_index(MilvusSettings(nprobe=7, rescore_factor=3), 10_000, 16, 8).nprobe == 7


def test_an_index_is_rebuilt_when_the_collection_outgrows_it() -> None:
    server = MilvusSettings(uri="http://localhost:19530")  # a server: its lists follow the rows
    small = plan_index(server, 20_000, 16, 8)
    assert replan(None, small, indexed=False) == (small, True)
    assert replan(None, small, indexed=True) == (small, True)  # unknown plan: rebuilt once
    grown = plan_index(server, 60_000, 16, 8)
    kept, rebuild = replan(small, grown, indexed=True)
    assert not rebuild and kept.nlist == small.nlist
    # nprobe follows the rows: 60,000 rows in small.nlist lists, scanning 50,000 of them
    assert kept.nprobe == min(small.nlist, -(-50_000 * small.nlist // 60_000))
    big = plan_index(server, 80_000, 16, 8)
    assert replan(small, big, indexed=True) == (big, True)  # 4x the rows: lists retrained
    exact = plan_index(server, 500, 0, 0)
    assert exact.index_type == "FLAT" and replan(exact, small, indexed=True) == (small, True)
    # Milvus Lite builds 128 lists whatever nlist says: searches are planned on those.
    tiny = plan_index(MilvusSettings(), 1_000, 16, 8)
    assert (tiny.nlist, tiny.nprobe, tiny.lite) == (128, 128, True)
    huge = plan_index(MilvusSettings(), 1_000_000, 16, 8)
    assert (huge.nlist, huge.nprobe) == (128, 128)  # every list, as before
    old = replace(tiny, params={"nlist": 25}, nprobe=25, lite=False)  # recorded before
    assert replan(old, plan_index(MilvusSettings(), 1_500, 16, 8), True) == \
        (replace(tiny, rows=1_000), False)


def test_small_segments_are_indexed_without_faiss_warning_in_the_output(
        store: MilvusStore, capfd: pytest.CaptureFixture[str]) -> None:
    """``lite_lists``: a segment under 39 rows a list (a first run of 2,000 passages, an
    incremental run of a few) gets Lite's IVF_SQ8 lists without FAISS's C++ warning on standard
    error, which FAISS itself prints for the same training (checked here, so the capture sees it),
    and its searches find their rows."""
    import faiss
    from milvus_lite.index import faiss_ivf_sq8

    vectors = np.random.default_rng(3).standard_normal((2000, 16)).astype(np.float32)
    store.ensure_collection("q", 16, "c")
    store.upsert("q", _rows(vectors))
    plan = plan_index(store.settings, 2000, 8, 8)
    assert store.ensure_index("q", plan)["index_type"] == "IVF_SQ8"
    store.upsert("q", _rows(vectors[:3], 5000))  # a segment of three rows after it
    store.flush("q")
    hits = store.search("q", vectors[[7, 1999]], 1, plan.nprobe)
    assert [h[0][0] for h in hits] == [7, 1999] and store.count("q") == 2003
    assert "WARNING clustering" not in capfd.readouterr().err
    assert isinstance(faiss_ivf_sq8.faiss, lite_lists._FaissForLite)
    plain = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatL2(16), 16, 128,
                                          faiss.ScalarQuantizer.QT_8bit)
    plain.train(vectors)
    assert "WARNING clustering 2000 points to 128 centroids" in capfd.readouterr().err


def test_a_growing_collection_is_re_indexed_for_its_rows(store: MilvusStore) -> None:
    """index_collection plans from the stored rows: the first index for 400 rows, the same index
    (nprobe re-derived) at 1.5x, a rebuilt one at 4x, and searches find their rows throughout."""
    from vecpress.tasks.codec.codec import fit_exact
    from vecpress.tasks.collection.loading import index_collection

    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((1600, 16)).astype(np.float32)
    codec = fit_exact(vectors[:50], "test")
    codec.report = codec.report | {"pq_m": 8, "pq_nbits": 8}  # indexed like a fitted codec
    store.ensure_collection("g", 16, "c")
    store.upsert("g", _rows(vectors[:400]))
    first, described, rows = index_collection(store, "g", codec, None)
    assert (first.index_type, first.rows, rows) == ("IVF_SQ8", 400, 400)
    assert described["index_type"] == "IVF_SQ8" and first.nlist == first.nprobe == 128
    store.upsert("g", _rows(vectors[400:600], 400))
    same, _, rows = index_collection(store, "g", codec, first)
    assert same.rows == 400 and same.nlist == first.nlist and rows == 600
    store.upsert("g", _rows(vectors[600:], 600))
    rebuilt, described, rows = index_collection(store, "g", codec, same)
    assert (rebuilt.rows, rebuilt.nlist, rows) == (1600, 128, 1600)
    assert described["indexed_rows"] == 1600
    hits = store.search("g", vectors[[3, 1500]], 1, rebuilt.nprobe)
    assert [h[0][0] for h in hits] == [3, 1500]


def test_transient_failures_are_retried_except_where_failing_is_the_answer(monkeypatch) -> None:
    """One retry policy for every call (``RetryingClient``); ``describe_alias`` (its exception
    means "no such alias"), ``search`` and the plain client's ``query`` (the search path) fail at
    once."""
    from collections import Counter

    from pymilvus import MilvusException

    from vecpress.infra import milvus_client as milvus

    class FailsEveryOtherCall:
        def __init__(self, **_: object) -> None:
            self.calls: Counter[str] = Counter()

        def __getattr__(self, name: str):
            def call(*_: object, **__: object) -> str:
                self.calls[name] += 1
                if self.calls[name] % 2 == 1:
                    raise MilvusException(message="server busy")
                return name
            return call

    monkeypatch.setattr(milvus, "MilvusClient", FailsEveryOtherCall)
    client = milvus.RetryingClient("http://nowhere:19530", "", retry_s=30)
    assert client.has_collection("c") == "has_collection"
    assert client.query("c", filter="") == "query"
    for once in (client.describe_alias, client.search, client.plain.query):
        with pytest.raises(MilvusException):
            once("c")
    assert client.plain.calls == {"has_collection": 2, "query": 3, "describe_alias": 1, "search": 1}


def test_a_lite_run_persists_its_rows_once_near_its_end_in_segments_faiss_can_train(
        store: MilvusStore, tmp_path) -> None:
    """``Loads.loaded``: Milvus Lite flushes what it holds once, when the rows left to load first
    fall within a shard of ``LITE_SEGMENT_ROWS`` (the last shards embed meanwhile), not before
    every group is chunked and not again; it leaves no segment under that floor: a flush that
    would is skipped."""
    from vecpress.tasks.collection.catalog import Build
    from vecpress.tasks.ingest.loads import LITE_SEGMENT_ROWS, Loads
    from vecpress.tasks.ingest.part_jobs import LoadedPart

    def persisted() -> int:  # rows in the engine's data files on disk
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(f).num_rows for f in (tmp_path / "m.db").rglob("data_*.parquet"))

    assert LITE_SEGMENT_ROWS == 4992  # 39 rows for each of Lite's 128 IVF lists
    vectors = np.random.default_rng(2).standard_normal((12_000, 8)).astype(np.float32)
    build = Build("e", "building", "c", "m", "fp32", "{}", "run")
    store.ensure_collection("e", 8, "c")
    loads = Loads(store.settings, store, build, lambda *a, **k: None, 2048)
    start = 0
    for rows, rows_left, on_disk in ((6000, None, 0), (2000, 9000, 0), (2000, 7000, 10_000),
                                     (2000, 5000, 10_000)):
        store.upsert("e", _rows(vectors[start:start + rows], start))
        start += rows
        loads.loaded(LoadedPart(rows, 0.0), rows_left)
        assert persisted() == on_disk, (rows, rows_left)
    assert store.count("e") == 12_000
    store.ensure_collection("f", 8, "c")  # too little held to make a segment: not flushed
    small = Loads(store.settings, store, replace(build, build="f"), lambda *a, **k: None, 2048)
    store.upsert("f", _rows(vectors[:1000]))
    small.loaded(LoadedPart(1000, 0.0), 6000)
    assert persisted() == 10_000 and small.ended


@pytest.mark.slow
def test_the_lite_server_keeps_an_idle_connection_that_pymilvus_pings(tmp_path) -> None:
    """pymilvus pings its server every 10 s, also between calls. Under gRPC's default server
    policy a connection idle for ~100 s is then closed with a GOAWAY (too_many_pings): the next
    call fails (pymilvus retries it, printing two error lines into a long ingest). The in-process
    Lite server accepts the pings: after the same idle time the call succeeds on its connection.
    The probe (tests/keepalive_probe.py) only sleeps: the suite starts it at the session's start
    and this test reads its result; run alone, the test runs it."""
    result = keepalive_result(tmp_path)
    assert "error" not in result, result.get("error")  # the probe itself failed
    assert result["ours"] == "ok", result
    assert "Too many pings" in result["default"], result  # gRPC's default policy: the control


_CALLS_AT_EXIT = """
import sys, threading
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import MilvusSettings

store = MilvusStore(MilvusSettings(uri=sys.argv[1]))
store.client.has_collection("c")  # the in-process gRPC server runs from here

def calls():  # a thread of an interrupted run, still calling Milvus while the process exits
    try:
        while True:
            store.client.has_collection("c", timeout=5)
    except Exception as exc:
        print("calls ended:", type(exc).__name__, file=sys.stderr)

threading.Thread(target=calls).start()
print("exiting", flush=True)
"""


def test_calls_still_arriving_as_the_process_exits_leave_no_traceback(tmp_path) -> None:
    """An interrupted ingest exits while its threads may still call Milvus Lite's in-process
    gRPC server. Python's exit shuts ``concurrent.futures``' pools before ``atexit`` stops the
    server, so such a call made the server's thread die with "cannot schedule new futures after
    shutdown" (a red CI run's Ctrl-C test). The process exits, the call ends at its own timeout,
    and no thread's traceback is printed."""
    import subprocess
    import sys

    script = tmp_path / "calls_at_exit.py"
    script.write_text(_CALLS_AT_EXIT)
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "m.db")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "exiting" in run.stdout, run.stderr[-3000:]
    assert "calls ended:" in run.stderr, run.stderr[-3000:]  # at its timeout
    assert "cannot schedule" not in run.stderr and "Exception in thread" not in run.stderr, \
        run.stderr[-3000:]
