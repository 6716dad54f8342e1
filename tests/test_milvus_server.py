"""``--milvus-uri`` against a real Milvus server: same chain, IVF_PQ index built from the codec."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest
from helpers import vecpress

from vecpress.infra.index_plan import plan_index
from vecpress.infra.milvus import MilvusStore, RefusedRow
from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.codec.codec import fit_codec
from vecpress.tasks.collection.catalog import Build
from vecpress.tasks.ingest.loads import Loads

pytestmark = pytest.mark.slow
COLLECTION = "server_e2e"


@pytest.fixture(scope="module")
def server_workspace(tmp_path_factory, paragraphs, model_cache, tiny_model, milvus_server,
                     dask_address: str) -> dict:
    root = tmp_path_factory.mktemp("server")
    with (root / "corpus.jsonl").open("w") as fh:
        for n, (doc_id, text) in enumerate(paragraphs[1500:2100]):
            fh.write(json.dumps({"id": doc_id, "text": text, "tenant": f"t{n % 6}",
                                 "year": 2000 + n % 25}) + "\n")
    return {"root": root, "sources": root / "corpus.jsonl", "model_cache": model_cache,
            "uri": milvus_server,
            # 600 passages: below the default 1,000 a collection keeps whole vectors (FLAT);
            # the compressed IVF_PQ path on a server is what this test is about, not the model
            # (the tiny random BERT, 64-d, with a 32-d PCA and 8 sub-quantisers).
            "env": {"VECPRESS_CODEC__MIN_FIT_VECTORS": "300", "VECPRESS_MODEL__PATH": tiny_model,
                    "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
                    "VECPRESS_DASK__ADDRESS": dask_address},
            "args": ["--collection", COLLECTION, "--storage-root", str(root / "data"),
                     "--milvus-uri", milvus_server]}


def _count(uri: str) -> int:
    store = MilvusStore(MilvusSettings(uri=uri))
    try:
        return store.count(COLLECTION)
    finally:
        store.close()


def test_ingest_and_search_on_a_milvus_server(server_workspace: dict, prefect_harness) -> None:
    """Also a multi-tenant collection: tenant is a typed field and the partition key, and a
    search filtered on it finds all of that tenant's rows, after upserts too (Milvus 2.3.5 upserts
    into the wrong partitions: ``MilvusStore._upsert_misroutes``)."""
    ws = server_workspace
    result = vecpress(ws, "ingest", str(ws["sources"]), *ws["args"], "--json",
                      "--typed-fields", "tenant:varchar,year:int64", "--partition-key", "tenant")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert summary["index"]["index_type"] == "IVF_PQ"
    assert summary["index"]["m"] == "8" and summary["index"]["nbits"] == "8"
    assert summary["rows_in_milvus"] == summary["passages"] == _count(ws["uri"]) >= 600
    assert summary["sanity_self_top3"] == 1.0

    again = vecpress(ws, "ingest", str(ws["sources"]), *ws["args"], "--json", "--full")
    assert again.returncode == 0, again.stderr
    # Every passage is read and written again (--full); without the flags, the fields are kept.
    assert json.loads(again.stdout[again.stdout.index("{\n"):])["passages"] == summary["passages"]
    assert _count(ws["uri"]) == summary["passages"]  # upserts, no duplicates
    store = MilvusStore(MilvusSettings(uri=ws["uri"], search_consistency="Strong"))
    try:
        described = store.client.describe_collection(COLLECTION)
        assert [f["name"] for f in described["fields"] if f.get("is_partition_key")] == ["tenant"]
        assert store.typed_fields(COLLECTION) == {"tenant": "varchar", "year": "int64"}
        # Each tenant's passages are all found through its partitions: a sixth of the corpus.
        per_tenant = [store.count_matching(COLLECTION, f'tenant == "t{n}"') for n in range(6)]
        assert sum(per_tenant) == summary["passages"] and min(per_tenant) > 0
    finally:
        store.close()

    doc_id, text = "", ""
    for line in ws["sources"].read_text().splitlines()[::150]:
        record = json.loads(line)
        doc_id, text = record["id"], record["text"]
        found = vecpress(ws, "search", text, "-k", "3", "--json", *ws["args"])
        assert found.returncode == 0, found.stderr
        assert doc_id in [r["doc_id"] for r in json.loads(found.stdout)["results"]]
    tenant = json.loads(line)["tenant"]
    found = vecpress(ws, "search", text, "-k", "5", "--json", "--filter",
                     f'tenant == "{tenant}" and year >= 2000', *ws["args"])
    assert found.returncode == 0, found.stderr
    results = json.loads(found.stdout)["results"]
    assert doc_id == results[0]["doc_id"] and {r["metadata"]["tenant"] for r in results} == {tenant}


def test_a_new_build_on_a_server_is_indexed_before_its_rows(milvus_server: str, tmp_path) -> None:
    """The index exists before the load, planned for the run's estimate, and the rows loaded
    afterwards are indexed by the server as their segments are sealed (flushes every FLUSH_ROWS);
    Milvus Lite and a build that has its index already are left alone."""
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32) * rng.uniform(0.5, 2, (3000, 1))
    # A dot-product model's codec: the index is planned, built and searched with metric IP.
    codec = fit_codec(vectors, CodecSettings(pca_dim=16, pq_m=4, sample_size=3000),
                      similarity="dot")
    build = Build("early_index", "building", codec.codec_id, "m", "fp32", "{}", "run")
    store = MilvusStore(MilvusSettings(uri=milvus_server))
    lite = MilvusStore(MilvusSettings(uri=str(tmp_path / "lite.db")))
    try:
        store.drop(build.build)
        store.ensure_collection(build.build, codec.dim, codec.codec_id)
        loads = Loads(store.settings, store, build, lambda *a, **k: None, 2048)
        plan = loads.index_early(codec, 40_000)
        assert plan is not None and plan.rows == 40_000 and plan.index_type == "IVF_PQ"
        assert plan.metric == "IP" and store.index_info(build.build)["metric_type"] == "IP"
        assert store.has_index(build.build)
        assert loads.index_early(codec, 40_000) is None  # already indexed
        projected = codec.project(vectors)
        rows = [{"pk": i, "doc_id": f"d{i}", "chunk": 0, "text": "t", "source": "s",
                 "codec_id": codec.codec_id, "vector": projected[i]} for i in range(3000)]
        store.upsert(build.build, rows)
        store.flush(build.build)
        deadline = time.monotonic() + 120
        while store.index_info(build.build).get("indexed_rows") != 3000:
            assert time.monotonic() < deadline, store.index_info(build.build)
            time.sleep(0.5)
        store.load(build.build)
        queries = codec.project_queries(vectors[:20])
        found = store.search(build.build, queries, 160, plan.nprobe, metric="IP")
        truth = np.argsort(-(queries @ projected.T), axis=1)[:, :10]
        # Largest inner products first (returned negated), and the candidates hold the true top 10.
        assert all(np.all(np.diff([d for _, d in hits]) >= -1e-4) for hits in found)
        assert np.mean([len(set(t) & {pk for pk, _ in hits}) / 10
                        for t, hits in zip(truth.tolist(), found, strict=True)]) >= 0.9
        lite.ensure_collection("c", codec.dim, codec.codec_id)
        assert Loads(lite.settings, lite, replace(build, build="c"), lambda *a, **k: None, 2048
                     ).index_early(codec, 40_000) is None
        assert not lite.has_index("c")
    finally:
        store.drop(build.build)
        store.close()
        lite.close()


def test_a_shard_table_upserted_on_a_server_reads_back_as_on_lite(milvus_server: str,
                                                                   tmp_path) -> None:
    """``MilvusStore.upsert_table`` on a server goes through the row path (``table_rows``): the
    rows read back as Lite's column path stores them, and a row the server refuses is
    quarantined while the rest loads."""
    n, dim = 200, 8
    vectors = np.random.default_rng(5).standard_normal((n, dim)).astype(np.float32)
    table = pa.table({
        "pk": pa.array(np.arange(n)), "doc_id": [f"d{i}" for i in range(n)],
        "chunk": pa.array(np.arange(n) % 3, pa.int32()),
        "text": ["x" * 70_000 if i == 7 else f"passage {i} é" for i in range(n)],
        "source": ["s"] * n, "codec_id": ["c"] * n,
        "metadata": [json.dumps({"n": i}) if i % 2 else "{}" for i in range(n)],
        "vector": pa.ListArray.from_arrays(np.arange(0, n * dim + 1, dim, dtype=np.int32),
                                           pa.array(vectors.ravel()))})
    stores = {"server": MilvusStore(MilvusSettings(uri=milvus_server)),
              "lite": MilvusStore(MilvusSettings(uri=str(tmp_path / "lite.db")))}
    try:
        read = {}
        for kind, store in stores.items():
            store.drop("shard_table")
            store.ensure_collection("shard_table", dim, "c")
            refused: list[RefusedRow] = []
            assert store.upsert_table("shard_table", table, refused) == n - 1
            assert [r.row["pk"] for r in refused] == [7] and "max" in refused[0].reason
            store.flush("shard_table")
            if kind == "server":
                store.ensure_index("shard_table", plan_index(store.settings, n, 4, 8))
                store.load("shard_table")
            read[kind] = store.rows("shard_table", list(range(n)),
                                    ["doc_id", "chunk", "text", "metadata", "vector"])
        assert read["server"] == read["lite"] and len(read["lite"]) == n - 1
        assert np.array_equal(np.array([read["server"][i]["vector"] for i in range(8, n)],
                                       np.float32), vectors[8:])
    finally:
        for store in stores.values():
            store.drop("shard_table")
            store.close()
