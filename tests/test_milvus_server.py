"""``--milvus-uri`` against a real Milvus server: same chain, IVF_PQ index built from the codec."""

from __future__ import annotations

import json

import pytest
from helpers import vecpress

from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import MilvusSettings

pytestmark = pytest.mark.slow
COLLECTION = "server_e2e"


@pytest.fixture(scope="module")
def server_workspace(tmp_path_factory, paragraphs, model_cache, milvus_server,
                     dask_address: str) -> dict:
    root = tmp_path_factory.mktemp("server")
    with (root / "corpus.jsonl").open("w") as fh:
        for doc_id, text in paragraphs[1500:2100]:
            fh.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    return {"root": root, "sources": root / "corpus.jsonl", "model_cache": model_cache,
            "uri": milvus_server,
            # 600 passages: below the default 1,000 a collection keeps whole vectors (FLAT);
            # the compressed IVF_PQ path on a server is what this test is about.
            "env": {"VECPRESS_CODEC__MIN_FIT_VECTORS": "300",
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
    ws = server_workspace
    result = vecpress(ws, "ingest", str(ws["sources"]), *ws["args"], "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{\n"):])
    assert summary["index"]["index_type"] == "IVF_PQ"
    assert summary["index"]["m"] == "32" and summary["index"]["nbits"] == "8"
    assert summary["rows_in_milvus"] == summary["passages"] == _count(ws["uri"]) >= 600
    assert summary["sanity_self_top3"] == 1.0

    again = vecpress(ws, "ingest", str(ws["sources"]), *ws["args"], "--json")
    assert again.returncode == 0, again.stderr
    assert _count(ws["uri"]) == summary["passages"]  # upserts, no duplicates

    doc_id, text = "", ""
    for line in ws["sources"].read_text().splitlines()[::150]:
        record = json.loads(line)
        doc_id, text = record["id"], record["text"]
        found = vecpress(ws, "search", text, "-k", "3", "--json", *ws["args"])
        assert found.returncode == 0, found.stderr
        assert doc_id in [r["doc_id"] for r in json.loads(found.stdout)["results"]]
