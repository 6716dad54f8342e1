"""The Python API end to end: ``vecpress.ingest`` then ``vecpress.open_collection`` by name and
storage root only, from another working directory, after moving the root, from 8 threads,
and on a real Milvus server, with every search bounded (``vecpress api``: test_api_server)."""

from __future__ import annotations

import gc
import itertools
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import vecpress
from vecpress.infra import storage
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.builds import live_shards
from vecpress.tasks.collection.catalog import Catalog
from vecpress.tasks.collection.home import OtherMilvusError
from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs

pytestmark = pytest.mark.slow


def _settings(root: Path, uri: str, model_cache: Path, tiny: str, name: str = "kb") -> Settings:
    return Settings(
        collection=name, storage_root=str(root), milvus={"uri": uri},
        model={"path": tiny, "cache_dir": str(model_cache)},
        codec={"pca_dim": 32, "pq_m": 8, "sample_size": 600, "min_fit_vectors": 600},
        chunk={"max_tokens": 48, "overlap_tokens": 8}, gc_grace_s=0,
        dask={"n_workers": 1, "threads_per_worker": 2})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("api-corpus")
    paragraphs = [t for _, t in itertools.islice(stdlib_docstring_paragraphs(), 900)]
    for i in range(30):
        (folder / f"doc{i:02d}.txt").write_text("\n\n".join(paragraphs[i * 30:(i + 1) * 30]))
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_model: str) -> str:
    return tiny_model


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus: Path, tiny: str, model_cache: Path, prefect_harness) -> dict:
    """A collection ingested through the API into a Milvus Lite file inside its storage root."""
    root = tmp_path_factory.mktemp("api") / "data"
    frozen = gc.get_freeze_count()
    summary = vecpress.ingest(str(corpus), _settings(root, str(root / "kb.db"), model_cache, tiny))
    assert summary.rows_in_milvus > 600 and not summary.errors
    # Worker processes freeze their long-lived objects out of the collector's passes; the
    # caller's process, where this small run's stages ran, is left as it was.
    assert gc.get_freeze_count() == frozen
    return {"root": root, "summary": summary, "queries": _passages(root, "kb", 12)}


def _passages(root: Path, name: str, count: int) -> list[str]:
    """Texts of ``count`` passages of the collection, each found once, spread over its shards."""
    paths = CollectionPaths(str(root), name)
    catalog = Catalog(paths.root)
    texts = [t for passages, _, _ in live_shards(catalog, catalog.active().build)
             for t in storage.read_parquet(passages, columns=["text"]).column("text").to_pylist()]
    unique = [t for t in texts if texts.count(t) == 1 and len(t) > 80]
    return unique[:: max(1, len(unique) // count)][:count]


def _own_passage_first(hits: list[list[vecpress.Hit]], queries: list[str]) -> None:
    """Each passage searched by its own text is ranked first, or within the top 3 when the
    docstrings hold a near-copy of it (the same sentence without its full stop, say)."""
    for query, found in zip(queries, hits, strict=True):
        assert any(query == h.text for h in found[:3]), (query, found[:3])


def test_search_needs_only_the_name_and_the_storage_root(built: dict, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # another working directory; Milvus and model from the catalog
    with vecpress.open_collection("kb", storage_root=str(built["root"])) as kb:
        hits = kb.search(built["queries"], k=5)
        info = kb.info()
    _own_passage_first(hits, built["queries"])
    own = next(h for h in hits[0] if built["queries"][0] == h.text)
    assert own.text in Path(own.source.removeprefix("file://")).read_text()
    assert own.doc_id == own.source and 0 < own.score <= 1.0001
    assert [h.score for h in hits[0]] == sorted((h.score for h in hits[0]), reverse=True)
    assert info.rows == built["summary"].rows_in_milvus and info.build == "kb__v1"
    assert info.milvus_uri == str(built["root"] / "kb.db")
    assert info.codec["pca_dim"] == 32 and info.index["index_type"] == "IVF_SQ8"
    assert info.last_run is not None and info.last_run["run_id"] == built["summary"].run_id
    assert info.bytes_per_vector["FP32 embedding"] == 4 * info.embedding_dim == 256
    # The tiers as measured now: the collection's folder, file by file, and per passage.
    folder = built["root"] / "collections" / "kb"
    on_disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
    stored = info.footprint["tiers"]["at rest on the storage root"]["bytes"]
    assert sum(stored.values()) == on_disk and info.footprint["passages"] == info.rows
    assert info.footprint["tiers"]["RAM while serving"]["bytes_per_passage"][
        "rescoring store (mapped codes), memory-mapped"] >= info.codec["refine_bytes"]


def test_eight_threads_get_what_one_gets(built: dict) -> None:
    queries = built["queries"]
    with vecpress.open_collection("kb", storage_root=str(built["root"])) as kb:
        alone = [kb.search(q, k=10)[0] for q in queries]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda q: kb.search(q, k=10)[0], queries * 4))
    for i, hits in enumerate(together):
        expected = alone[i % len(queries)]
        assert [h.pk for h in hits] == [h.pk for h in expected]
        np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected],
                                   atol=1e-5)


def test_embeddings_in_and_errors_that_name_the_fix(built: dict) -> None:
    with vecpress.open_collection("kb", storage_root=str(built["root"])) as kb:
        vectors = kb.embed(built["queries"][:2])
        assert vectors.shape == (2, 64)
        _own_passage_first(kb.search_embeddings(vectors, k=3), built["queries"][:2])
        with pytest.raises(ValueError, match="give 1 to 1,024 results per query"):
            kb.search("anything", k=0)
        with pytest.raises(ValueError, match="query 1 is empty"):
            kb.search(["fine", "  "])
        with pytest.raises(ValueError, match=r"makes \[n, 64\]"):
            kb.search_embeddings(np.zeros((1, 384), np.float32))
    with pytest.raises(LookupError, match="no collection 'nope'"):
        vecpress.open_collection("nope", storage_root=str(built["root"]))


def test_a_search_over_a_bound_is_refused_before_any_work(built: dict) -> None:
    """1,024 queries × k=1,024 once grew a server to 23 GB: now a ValueError naming the setting,
    at once; the largest search the bounds allow works."""
    query = built["queries"][0]
    with vecpress.open_collection("kb", storage_root=str(built["root"])) as kb:
        with pytest.raises(vecpress.LimitExceeded, match="VECPRESS_SEARCH__MAX_QUERIES") as over:
            kb.search([query] * 1024, k=1024)
        assert over.value.setting == "search.max_queries"
        with pytest.raises(ValueError, match=r"100 queries × k=100 = 10,000 results: the limit "
                                             r"is 4,096 \(setting search.max_hits"):
            kb.search([query] * 100, k=100)
        with pytest.raises(ValueError, match=r"query 1 has 20,000 bytes.*search\.max_query_bytes"):
            kb.search([query, "word " * 4000])
        with pytest.raises(ValueError, match=r"search\.max_hits"):
            kb.search_embeddings(kb.embed([query] * 100), k=100)
        hits = kb.search([query] * 256, k=16)
        assert len(hits) == 256 and all(h[0].text == hits[0][0].text for h in hits)
        assert kb.query_cache.hits >= 255  # one text embedded once
    tight = Settings(collection="kb", storage_root=str(built["root"]),
                     search={"max_queries": 2, "max_candidates": 16})
    with vecpress.open_collection(settings=tight) as kb:
        with pytest.raises(ValueError, match="3 queries in one search: the limit is 2"):
            kb.search(built["queries"][:3])
        # 16 candidates per Milvus call: one query per call, each still ranked right
        _own_passage_first(kb.search(built["queries"][:2], k=2), built["queries"][:2])


def test_a_moved_storage_root_still_searches(built: dict, tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere"
    shutil.move(built["root"], moved)
    try:
        with vecpress.open_collection("kb", storage_root=str(moved)) as kb:
            _own_passage_first(kb.search(built["queries"][:4], k=3), built["queries"][:4])
            assert kb.settings.milvus.uri == str(moved / "kb.db")
    finally:
        shutil.move(moved, built["root"])


def test_an_ingest_into_another_milvus_is_refused(built: dict, corpus: Path, tiny: str,
                                                  model_cache: Path, tmp_path: Path) -> None:
    other = _settings(built["root"], str(tmp_path / "other.db"), model_cache, tiny)
    with pytest.raises(OtherMilvusError, match=r"lives on Milvus .*kb\.db, not .*other\.db"):
        vecpress.ingest(str(corpus), other)
    assert not (tmp_path / "other.db").exists()


def test_the_api_on_a_milvus_server(corpus: Path, tiny: str, model_cache: Path, tmp_path: Path,
                                    milvus_server: str, prefect_harness) -> None:
    root = tmp_path / "data"
    summary = vecpress.ingest(str(corpus), _settings(root, milvus_server, model_cache, tiny,
                                                     name="kb_server"))
    texts = _passages(root, "kb_server", 6)
    with vecpress.open_collection("kb_server", storage_root=str(root)) as kb:
        _own_passage_first(kb.search(texts, k=5), texts)
        info = kb.info()
    assert info.milvus_uri == milvus_server and info.rows == summary.rows_in_milvus
    assert info.index["index_type"] == "IVF_PQ"
    # The server's own figure for the rows' field data, against its binlog files on disk: it
    # counts them uncompressed (8 bytes an integer, 4 × dim a vector, length + 16 a string), so
    # above the compressed files, by less than text compresses (3.7× for these docstrings).
    from milvus import default_server

    with vecpress.open_collection("kb_server", storage_root=str(root)) as kb:
        described = kb._searcher.store.client.describe_collection(info.build)
    logs = Path(default_server.config.base_data_dir) / "data"
    binlogs = sum(p.stat().st_size for kind in ("insert_log", "stats_log", "delta_log")
                  for p in (logs / kind / str(described["collection_id"])).rglob("*")
                  if p.is_file())
    measured = info.footprint["tiers"]["at rest in Milvus"]["bytes"]
    assert binlogs < measured["field data, uncompressed (the server's figure)"] < 5 * binlogs
    assert "RAM while serving" not in info.footprint["tiers"] or set(
        info.footprint["tiers"]["RAM while serving"]["bytes"]) == {
        "rescoring store (mapped codes), memory-mapped"}
    shutil.rmtree(root / "collections" / "kb_server" / "catalog")  # a root without the catalog
    with pytest.raises(LookupError, match="ingest first"):
        vecpress.open_collection("kb_server", storage_root=str(root))


def test_a_script_without_the_main_guard_fails_at_once_saying_why(
        corpus: Path, tiny: str, model_cache: Path, tmp_path: Path, prefect_harness) -> None:
    """The README's example run as a script without ``if __name__ == "__main__":``: each worker
    process of the local cluster imports the script again. Each such import used to run the
    ingest too and wait for the collection lock its parent held, while the parent waited for
    the workers: a hang with no output. Now the worker's call fails, saying why, and so does
    the script, naming the fix."""
    import subprocess
    import sys

    from prefect.settings import PREFECT_API_URL

    settings = {"collection": "kb", "storage_root": str(tmp_path / "data"),
                "milvus": {"uri": str(tmp_path / "kb.db")},
                "model": {"path": tiny, "cache_dir": str(model_cache)},
                "dask": {"n_workers": 1, "threads_per_worker": 1, "in_process_bytes": 0}}
    script = tmp_path / "unguarded.py"
    script.write_text(f"import vecpress\n\nvecpress.ingest({str(corpus)!r}, "
                      f"vecpress.Settings(**{settings!r}))\n")
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-3000:]
    assert f"vecpress.ingest() was called while a worker process imported {script}" in run.stderr
    assert run.stderr.strip().splitlines()[-1].endswith(
        'its vecpress calls belong under `if __name__ == "__main__":`')
