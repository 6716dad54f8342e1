"""The edges of ingest, through the real CLI, Milvus Lite and a tiny model: a 100 KB token, the
same document ids in two files, a collection that starts with a handful of passages and grows past
the codec's minimum, and rows Milvus refuses."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from durable import catalog, ingest, summary_of

from vecpress.infra.milvus import MilvusStore, RefusedRow
from vecpress.infra.milvus_fields import MAX_TEXT
from vecpress.infra.settings import MilvusSettings
from vecpress.tasks.inputs.chunking import split_to_bytes

pytestmark = pytest.mark.slow
MIN_FIT = 150


@pytest.fixture(scope="module")
def edges(tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_model: str,
          dask_address: str, prefect_harness, paragraphs: list[tuple[str, str]]) -> dict:
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("edges")
    corpus = root / "corpus"
    corpus.mkdir()
    # One 100 KB hex string: a single [UNK] token for the tokenizer, 100,103 characters.
    (corpus / "hex.txt").write_text("header line\n\n" + secrets.token_hex(50_000) + " tail")
    for name, offset in (("a", 0), ("b", 10)):  # the same five ids in two files
        (corpus / f"dup_{name}.jsonl").write_text("".join(
            json.dumps({"id": f"doc{i}", "text": f"{name} file: {paragraphs[i + offset][1]}"})
            + "\n" for i in range(5)))
    env = {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200",
           "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
           "VECPRESS_MODEL__PATH": tiny_model,
           "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
           "VECPRESS_CODEC__MIN_FIT_VECTORS": str(MIN_FIT), "VECPRESS_GC_GRACE_S": "0",
           "VECPRESS_DASK__ADDRESS": dask_address}
    return {"root": root, "corpus": corpus, "env": os.environ | env, "paragraphs": paragraphs}


def _milvus_texts(ws: dict, collection: str) -> list[dict]:
    build = catalog(ws, collection).active().build
    store = MilvusStore(MilvusSettings(uri=str(ws["root"] / f"{collection}.db")))
    try:
        store.load(build)
        return store.client.query(build, filter="pk >= 0", output_fields=["doc_id", "text",
                                                                          "source"], limit=16384)
    finally:
        store.close()


def test_a_small_collection_starts_exact_then_fits_its_codec_as_it_grows(edges: dict) -> None:
    ws = edges
    first = ingest(ws, "edges")
    assert first.returncode == 0, first.stderr[-3000:]
    summary = summary_of(first)
    assert summary["codec"]["kind"] == "exact" and summary["index"]["index_type"] == "FLAT"
    rows = _milvus_texts(ws, "edges")
    assert len(rows) == summary["passages"] == summary["rows_in_milvus"]
    # The 100 KB token became passages that each fit a VARCHAR, with nothing dropped.
    hex_rows = [r["text"] for r in rows if r["source"].endswith("hex.txt")]
    assert max(len(t.encode()) for t in hex_rows) <= MAX_TEXT
    assert sum(len(t) for t in hex_rows) >= 100_000
    # The same five ids in two files: ten rows, each file's own.
    dups = [(r["doc_id"], Path(r["source"]).name) for r in rows if "dup_" in r["source"]]
    assert sorted(dups) == sorted((f"doc{i}", f"dup_{n}.jsonl") for i in range(5) for n in "ab")
    # GC (grace 0 here) keeps the archive of the exact codec the build uses: it once read the
    # codec id "exact-<hash>" in a file name as "exact" and removed every shard of it.
    archives = catalog(ws, "edges").read("shards").column("archive_url").to_pylist()
    assert archives and all(Path(a.removeprefix("file://")).exists() for a in archives)
    search = _search(ws, "edges", rows[0]["text"][:200])
    assert search.returncode == 0, search.stderr[-2000:]

    # Delete one of the two files and add enough text to pass the codec's minimum.
    (ws["corpus"] / "dup_b.jsonl").unlink()
    (ws["corpus"] / "more.jsonl").write_text("".join(
        json.dumps({"id": f"m{i}", "text": t}) + "\n"
        for i, (_, t) in enumerate(ws["paragraphs"][100:100 + 2 * MIN_FIT])))
    grown = ingest(ws, "edges")
    assert grown.returncode == 0, grown.stderr[-3000:]
    summary = summary_of(grown)
    assert summary["codec"].get("kind") != "exact" and summary["codec"]["pca_dim"] == 32
    assert summary["build"] == "edges__v2" and summary["index"]["index_type"] != "FLAT"
    rows = _milvus_texts(ws, "edges")
    assert len(rows) == summary["rows_in_milvus"] >= 2 * MIN_FIT
    dups = [(r["doc_id"], Path(r["source"]).name) for r in rows if "dup_" in r["source"]]
    assert sorted(dups) == [(f"doc{i}", "dup_a.jsonl") for i in range(5)]  # only b's rows went
    assert catalog(ws, "edges").active().build == "edges__v2"


def _search(ws: dict, collection: str, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecpress", "search", text, "-k", "3", "--json",
                           "--collection", collection, "--storage-root", str(ws["root"] / "data"),
                           "--milvus-uri", str(ws["root"] / f"{collection}.db")],
                          env=ws["env"], capture_output=True, text=True, timeout=300)


def test_rows_milvus_refuses_are_quarantined_while_the_rest_loads(tmp_path: Path) -> None:
    store = MilvusStore(MilvusSettings(uri=str(tmp_path / "refuse.db"), insert_batch_bytes=1 << 20))
    try:
        store.ensure_collection("c", 8, "codec")
        rows = [{"pk": i, "doc_id": f"d{i}", "chunk": 0, "text": "x" * (70_000 if i in (3, 7)
                                                                       else 10),
                 "source": "s", "codec_id": "codec", "vector": np.full(8, i, np.float32)}
                for i in range(10)]
        refused: list[RefusedRow] = []
        assert store.upsert("c", rows, refused) == 8
        assert [r.row["pk"] for r in refused] == [3, 7]
        assert all("exceeds max" in r.reason for r in refused)
        assert store.count("c") == 8
        with pytest.raises(Exception, match="exceeds max"):  # without a quarantine list: raise
            store.upsert("c", rows[3:4])
    finally:
        store.close()


@pytest.mark.parametrize("text", ["a" * 100_103, "word " * 30_000, "中" * 40_000, "é" * 33_000])
def test_split_to_bytes_keeps_every_character_within_the_bound(text: str) -> None:
    pieces = split_to_bytes(text, MAX_TEXT)
    assert all(len(p.encode()) <= MAX_TEXT for p in pieces) and len(pieces) >= 2
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
