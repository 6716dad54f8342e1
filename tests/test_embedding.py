"""ONNX export and inference against the sentence-transformers reference (real model, real text)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import ExportError, export_model
from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir


def test_fp32_matches_sentence_transformers(fp32_artifact, paragraphs) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [t for _, t in paragraphs[100:228]]
    reference = SentenceTransformer(fp32_artifact.model_dir, device="cpu").encode(texts)
    ours = OnnxEmbedder(fp32_artifact).encode(texts)
    cosines = np.sum(reference * ours, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(ours, axis=1))
    assert cosines.min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert fp32_artifact.min_cosine >= 0.999  # the gate recorded at export


def test_token_budget_changes_batching_not_results(fp32_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[:200]]
    small = OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=128)).encode(texts)
    large = OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=16384)).encode(texts)
    np.testing.assert_allclose(small, large, atol=2e-5)


def test_tokenising_windows_keep_input_order(fp32_artifact, paragraphs, monkeypatch) -> None:
    """Windows tokenised ahead (here of 37 passages) give the same rows as one window."""
    import vecpress.tasks.embed.embedder as embedding

    texts = [t for _, t in paragraphs[:200]] + ["word " * 600]
    single = OnnxEmbedder(fp32_artifact)
    whole = single.encode(texts)
    monkeypatch.setattr(embedding, "WINDOW", 37)
    embedder = OnnxEmbedder(fp32_artifact)
    done: list[int] = []
    windowed = embedder.encode(texts, on_progress=done.append)
    np.testing.assert_allclose(windowed, whole, atol=2e-5)
    assert sum(done) == len(texts) and embedder.truncated == single.truncated >= 1


def test_concurrent_sessions_give_the_same_rows(fp32_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[:300]]
    one = OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=1024)).encode(texts)
    three = OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=1024, sessions=3))
    assert three._depth == 4 and three._sessions.qsize() == 3
    np.testing.assert_allclose(three.encode(texts), one, atol=2e-5)


def test_tokeniser_processes_give_the_same_embeddings(fp32_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[:300]] + ["word " * 600]
    here = OnnxEmbedder(fp32_artifact)
    pooled = OnnxEmbedder(fp32_artifact, ModelSettings(tokenizer_processes=2))
    assert pooled._tokenisers is not None and pooled._tokenisers.processes == 2
    np.testing.assert_allclose(pooled.encode(texts), here.encode(texts), atol=2e-5)
    assert pooled.truncated == here.truncated >= 1


def test_local_dask_workers_may_start_tokeniser_processes(fp32_artifact, paragraphs, tmp_path) -> None:
    """dask_client's workers are not daemonic, so an embedder there gets its tokeniser pool."""
    import pyarrow as pa

    from vecpress.infra import storage
    from vecpress.infra.cluster import dask_client
    from vecpress.infra.settings import DaskSettings
    from vecpress.tasks.arrays import read_embeddings
    from vecpress.tasks.embed.tokenising import can_spawn_processes
    from vecpress.tasks.shard_jobs import embed_shard

    texts = [t for _, t in paragraphs[:64]]
    shard = str(tmp_path / "passages.parquet")
    storage.write_parquet(shard, pa.table({"pk": list(range(64)), "doc_id": ["d"] * 64,
                                           "chunk": list(range(64)), "text": texts}))
    with dask_client(DaskSettings(n_workers=1, threads_per_worker=1)) as (client, _):
        assert all(client.run(can_spawn_processes).values())
        done = client.submit(embed_shard, shard, str(tmp_path / "e.parquet"), fp32_artifact,
                             ModelSettings(tokenizer_processes=2), 1).result()
        pools = client.run(lambda: [o._tokenisers is not None for o in __import__("gc").get_objects()
                                    if isinstance(o, OnnxEmbedder)])
    assert done.rows == 64 and list(pools.values()) == [[True]]
    _, vectors = read_embeddings(done.url)
    np.testing.assert_allclose(vectors, OnnxEmbedder(fp32_artifact).encode(texts), atol=2e-5)


def test_overlong_passages_are_counted(fp32_artifact) -> None:
    embedder = OnnxEmbedder(fp32_artifact)
    embedder.encode(["word " * 600, "short"])
    assert embedder.truncated == 1


def test_second_export_is_a_cache_hit(fp32_artifact, model_cache: Path, paragraphs) -> None:
    onnx_file = Path(fp32_artifact.onnx_path)
    before = os.stat(onnx_file).st_mtime_ns
    again = export_model(read_model_spec(resolve_model_dir(None)), "fp32", model_cache,
                         lambda: [t for _, t in paragraphs[:64]])
    assert again == fp32_artifact
    assert os.stat(onnx_file).st_mtime_ns == before


def test_unknown_variant_is_refused(model_cache: Path) -> None:
    with pytest.raises(ExportError, match="use fp32, fp16 or int8"):
        export_model(read_model_spec(resolve_model_dir(None)), "bf16", model_cache, lambda: ["x"])
