"""Rebuild a collection from the Parquet archive (no re-embedding) into Milvus Lite and a server."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from vecpress.cli import app
from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import CodecSettings, MilvusSettings, Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.codec import fit_codec
from vecpress.tasks.codec.refine import write_archive as write_archive_shard
from vecpress.tasks.collection.builds import live_shards
from vecpress.tasks.collection.catalog import Build, Catalog, ShardRow
from vecpress.tasks.collection.reindex import ReindexError, reindex
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.inputs.records import PASSAGE_SCHEMA, passage_pk
from vecpress.tasks.search.opening import open_searcher

SHARD = 300


def write_archive(root: Path, artifact, paragraphs, codec_settings: CodecSettings) -> dict:
    """A collection 'src' with one active build of two shards, as an ingest writes it (real
    embeddings): passage and archive shards, the codec, and the catalog's builds/files/shards."""
    items = paragraphs[:2 * SHARD]
    vectors = OnnxEmbedder(artifact).encode([t for _, t in items])
    codec = fit_codec(vectors, codec_settings)
    paths = CollectionPaths(str(root), "src")
    codec.save(paths.codec_dir(codec.codec_id))
    catalog = Catalog(paths.root)
    build = Build("src__v1", "active", codec.codec_id, Path(artifact.onnx_path).parent.name,
                  artifact.variant, "{}", "r1")
    catalog.save_build(build)
    for i in range(2):
        rows = items[i * SHARD:(i + 1) * SHARD]
        source, group = f"file:///corpus/part{i}.txt", f"g{i}"
        pks = np.array([passage_pk(source, doc_id, 0) for doc_id, _ in rows], np.int64)
        passages = storage.join(paths.group_dir(group), "part-0000.parquet")
        storage.write_parquet(passages, pa.table(
            {"pk": pks, "doc_id": [d for d, _ in rows], "chunk": [0] * len(rows),
             "text": [t for _, t in rows], "source": [source] * len(rows)}, schema=PASSAGE_SCHEMA))
        archive = storage.join(paths.group_dir(group), f"archive-{codec.codec_id}-0000.arrow")
        write_archive_shard(archive, pks, codec.project(vectors[i * SHARD:(i + 1) * SHARD]),
                            codec.refiner)
        catalog.record_shards([ShardRow(build.build, f"{group}/0000", group, 0, "loaded",
                                        passages, "", archive, len(rows), "r1")])
        catalog.upsert("files", [{"build": build.build, "path": source, "size": 1,
                                  "modified": "", "content_hash": "h", "group_id": group,
                                  "passages": len(rows), "run_id": "r1"}])
    return {"paths": paths, "codec": codec, "items": items}


@pytest.fixture(scope="module")
def archive(tmp_path_factory, fp32_artifact, paragraphs) -> dict:
    root = tmp_path_factory.mktemp("reindex")
    return write_archive(root / "data", fp32_artifact, paragraphs, CodecSettings(pca_dim=64, pq_m=8))


def test_reindex_a_run_into_milvus_lite_and_search_it(archive, tmp_path, model_cache) -> None:
    paths = archive["paths"]
    settings = Settings(collection="copy", storage_root=str(tmp_path / "data"),
                        milvus=MilvusSettings(uri=str(tmp_path / "m.db")),
                        model={"cache_dir": str(model_cache)})
    summary = reindex(paths.root, settings)
    assert summary.shards == 2 and summary.rows_written == summary.rows_in_milvus == 2 * SHARD
    assert summary.index["index_type"] == "IVF_SQ8" and summary.build == "copy__v1"
    copy = Catalog(CollectionPaths(settings.storage_root, "copy").root)
    assert copy.active().codec_id == archive["codec"].codec_id
    plan = json.loads(copy.active().index)  # how it is searched, recorded with the build
    assert plan["index_type"] == "IVF_SQ8" and plan["rows"] == 2 * SHARD
    assert plan["nprobe"] == plan["params"]["nlist"]  # small: every list is scanned
    assert len(live_shards(copy, "copy__v1")) == 2  # the same shards, not copies

    again = reindex(str(paths.root), settings)  # a new build, switched to when complete
    assert again.rows_in_milvus == 2 * SHARD and again.build == "copy__v2"
    statuses = {b.build: b.status for b in copy.builds()}
    assert statuses == {"copy__v1": "retired", "copy__v2": "active"}

    searcher = open_searcher(settings)
    try:
        assert searcher.snapshot.nprobe == json.loads(copy.active().index)["nprobe"]
        probes = archive["items"][::97]
        hits = searcher.search([t for _, t in probes], 3)
        assert all(doc_id in [h.doc_id for h in row] for (doc_id, _), row in
                   zip(probes, hits, strict=True))
    finally:
        searcher.store.close()


def test_reindex_cli_and_its_errors(archive, tmp_path) -> None:
    runner = CliRunner()
    args = ["--storage-root", str(tmp_path / "data"), "--milvus-uri", str(tmp_path / "m.db")]
    result = runner.invoke(app, ["reindex", "--from-archive", str(archive["paths"].root),
                                 "--collection", "cli_copy", "--json", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_in_milvus"] == 2 * SHARD
    table = runner.invoke(app, ["reindex", "--from-archive", str(archive["paths"].root),
                                "--collection", "cli_table", *args], env={"COLUMNS": "120"})
    assert table.exit_code == 0, table.output
    # The index with its parameters (it printed "IVF_SQ8 {}": they were looked for a level up).
    assert re.search(r"index\s+│\s+IVF_SQ8 \(nlist \d+\)", table.stdout), table.stdout
    bad = runner.invoke(app, ["reindex", "--from-archive", str(tmp_path), "--collection", "x", *args])
    assert bad.exit_code == 2 and "is not a collection directory with a catalog" in \
        " ".join(bad.output.split())
    with pytest.raises(ReindexError, match=r"not a collection directory"):
        reindex(str(tmp_path / "nothing"), Settings(storage_root=str(tmp_path / "data")))


@pytest.mark.slow
def test_reindex_into_a_milvus_server_uses_the_codec_ivf(tmp_path, fp32_artifact, paragraphs,
                                                          milvus_server) -> None:
    built = write_archive(tmp_path / "data", fp32_artifact, paragraphs,
                          CodecSettings(pca_dim=64, pq_m=16, ivf_nlist=12))
    settings = Settings(collection="reindexed_ivf", storage_root=str(tmp_path / "data"),
                        milvus=MilvusSettings(uri=milvus_server))
    summary = reindex(str(built["paths"].root), settings)
    assert summary.rows_in_milvus == 2 * SHARD
    assert summary.index["index_type"] == "IVF_PQ"
    assert (summary.index["nlist"], summary.index["m"], summary.index["nbits"]) == ("12", "16", "8")
    store = MilvusStore(settings.milvus)
    try:  # the name is an alias of the build on a server: applications query it by name
        query = built["codec"].project(OnnxEmbedder(fp32_artifact).encode([built["items"][5][1]]))
        best = store.search("reindexed_ivf", query, 3)[0][0][0]
        assert store.rows("reindexed_ivf", [best])[best]["doc_id"] == built["items"][5][0]
        assert store.client.describe_alias("reindexed_ivf")["collection_name"] == summary.build
    finally:
        store.close()
