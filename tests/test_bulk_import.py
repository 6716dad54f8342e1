"""Milvus bulk import on the real Milvus 2.3.5 server: a new build's first load is imported from
Parquet files the server reads itself; incremental runs upsert; an upsert after an import leaves
each passage once (what a resumed run relies on)."""

from __future__ import annotations

import json

import pytest
from helpers import vecpress

from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import MilvusSettings

pytestmark = pytest.mark.slow
COLLECTION = "bulk_e2e"


def _count(uri: str, name: str) -> int:
    store = MilvusStore(MilvusSettings(uri=uri))
    try:
        store.flush(name)
        return store.count(name)
    finally:
        store.close()


def test_a_first_load_is_bulk_imported_and_later_runs_upsert(tmp_path, paragraphs, model_cache,
                                                             tiny_model, milvus_server,
                                                             prefect_harness) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for part in range(4):
        with (corpus / f"part{part}.jsonl").open("w") as fh:
            for doc_id, text in paragraphs[2100 + part * 150:2100 + (part + 1) * 150]:
                fh.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    bulk_dir = tmp_path / "milvus-reads-here"
    ws = {"model_cache": model_cache,  # bulk import is the subject: the tiny random BERT
          "env": {"VECPRESS_MODEL__PATH": tiny_model, "VECPRESS_CODEC__PCA_DIM": "32",
                  "VECPRESS_CODEC__PQ_M": "8",
                  "VECPRESS_CODEC__MIN_FIT_VECTORS": "300", "VECPRESS_MILVUS__BULK_MIN_ROWS": "200",
                  "VECPRESS_MILVUS__BULK_DIR": str(bulk_dir),
                  "VECPRESS_INPUTS__FILES_PER_SHARD": "1"}}
    args = ["--collection", COLLECTION, "--storage-root", str(tmp_path / "data"), "--milvus-uri",
            milvus_server, "--json"]
    (corpus / "part3.jsonl").rename(tmp_path / "later.jsonl")
    first = vecpress(ws, "ingest", str(corpus), *args)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout[first.stdout.index("{\n"):])
    build = summary["build"]
    # Imports of at least 200 rows: several ~150-passage shards per file, the rest at the end.
    assert summary["rows_bulk_imported"] == summary["passages"] == summary["rows_in_milvus"]
    assert summary["rows_in_milvus"] == _count(milvus_server, build) > 0
    assert summary["sanity_self_top3"] == 1.0  # imported rows are indexed and searchable
    assert list(bulk_dir.rglob("*.parquet")) == []  # import files are removed

    (tmp_path / "later.jsonl").rename(corpus / "part3.jsonl")
    second = vecpress(ws, "ingest", str(corpus), *args)
    assert second.returncode == 0, second.stderr[-3000:]
    more = json.loads(second.stdout[second.stdout.index("{\n"):])
    assert more["changes"]["new"] == 1 and more["rows_bulk_imported"] == 0  # incremental: upserts
    assert more["rows_in_milvus"] == _count(milvus_server, build) == summary["passages"] + \
        more["passages"]


def test_an_upsert_after_a_bulk_import_keeps_each_passage_once(tmp_path, fp32_artifact,
                                                               paragraphs, milvus_server) -> None:
    """A killed run may have imported a shard it had not committed as loaded; the rerun upserts
    it. Milvus's upsert deletes every row of a key first, so nothing is doubled. Typed metadata
    fields travel both ways (a server indexes varchar and int64, not bool, on Milvus 2.3), also
    into a multi-tenant collection whose partition key is one of them: each tenant's rows are
    found through its partitions after the import and after the upsert (written as delete +
    insert on 2.3, ``MilvusStore._upsert_misroutes``)."""
    import numpy as np
    import pyarrow as pa

    from vecpress.infra import storage
    from vecpress.tasks.codec.refine import write_archive
    from vecpress.tasks.ingest.part_jobs import bulk_load_parts, load_part

    n, dim = 200, 16
    passages = str(tmp_path / "shard" / "part-0000.parquet")
    archive = str(tmp_path / "shard" / "archive-c-0000.arrow")
    storage.write_parquet(passages, pa.table({
        "pk": np.arange(n, dtype=np.int64), "doc_id": [f"d{i}" for i in range(n)],
        "chunk": np.zeros(n, np.int32), "text": [t for _, t in paragraphs[:n]],
        "source": ["file:///x.jsonl"] * n,
        "metadata": [json.dumps({"team": f"t{i % 4}", "year": 2000 + i % 20, "ok": i % 2 == 0})
                     if i % 10 else None for i in range(n)]}))
    vectors = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    write_archive(archive, np.arange(n, dtype=np.int64), vectors)
    settings = MilvusSettings(uri=milvus_server, bulk_dir=str(tmp_path / "bulk"),
                              search_consistency="Strong")
    store = MilvusStore(settings)
    typed = {"ok": "bool", "team": "varchar", "year": "int64"}
    matching = 'team == "t1" and year >= 2010 and ok == false'
    try:
        store.ensure_collection("bulk_once", dim, "c",
                                MetadataSettings(fields=typed, partition_key="team"))
        described = store.client.describe_collection("bulk_once")
        assert [f["name"] for f in described["fields"] if f.get("is_partition_key")] == ["team"]
        assert set(store.client.list_indexes("bulk_once")) == {"team", "year"}
        [done] = bulk_load_parts([(passages, archive)], "c", dim, "bulk_once", settings, typed)
        assert done.bulk and done.written == n and not done.note
        index = store.client.prepare_index_params()
        index.add_index("vector", index_type="FLAT", metric_type="L2")
        store.client.create_index("bulk_once", index)
        store.load("bulk_once")
        assert _count(milvus_server, "bulk_once") == n
        # i % 4 == 1 (odd, so ok is false) and i % 20 >= 10: 13 and 17 of every 20.
        assert store.count_matching("bulk_once", matching) == 20
        assert store.count_matching("bulk_once", 'team == ""') == n // 10  # no metadata: empty
        tenants = ['team == ""'] + [f'team == "t{t}"' for t in range(4)]
        per_tenant = [store.count_matching("bulk_once", f) for f in tenants]
        assert sum(per_tenant) == n and min(per_tenant) > 0
        assert load_part(passages, archive, "c", dim, "bulk_once", settings, typed).written == n
        assert _count(milvus_server, "bulk_once") == n
        assert store.count_matching("bulk_once", matching) == 20
        assert [store.count_matching("bulk_once", f) for f in tenants] == per_tenant
    finally:
        store.drop("bulk_once")
        store.close()
