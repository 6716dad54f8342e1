"""The CUDA paths, on a real GPU: fp16 + IO binding, out-of-memory halving under real GPU memory
pressure, one Dask-CUDA worker per GPU, and codec training on a CUDA torch device.

Skipped where ONNX Runtime has no CUDA provider or torch sees no GPU (CI has neither); run them on a
GPU machine with ``pytest tests/test_gpu.py`` (see docs/gpu.md).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from vecpress.infra.settings import CodecSettings, DaskSettings, ModelSettings
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import export_model
from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir
from vecpress.tasks.embed.oom import OutOfMemoryFloorError
from vecpress.tasks.worker_cache import cached


def _cuda_ready() -> bool:
    try:
        import onnxruntime as ort
        import torch
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _cuda_ready(), reason="needs onnxruntime-gpu and a CUDA GPU")]


@pytest.fixture(scope="module")
def fp16_artifact(model_cache, paragraphs) -> ModelArtifact:
    spec = read_model_spec(resolve_model_dir(None))
    return export_model(spec, "fp16", model_cache, lambda: [t for _, t in paragraphs[:64]])


@pytest.fixture(scope="module")
def long_texts(paragraphs) -> list[str]:
    """~2,000 passages of 100–250 tokens: big batches need hundreds of MiB of activations."""
    joined = [" ".join(t for _, t in paragraphs[i:i + 4]) for i in range(0, 3000, 3)]
    return [t for t in joined if len(t.split()) > 90][:2000]


def test_fp16_gate_is_checked_on_cuda(fp16_artifact) -> None:
    assert fp16_artifact.checked_on == "cuda"
    assert fp16_artifact.min_cosine >= 0.999


def test_fp16_on_cuda_matches_fp32_on_cpu(fp16_artifact, fp32_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[300:812]]
    gpu = OnnxEmbedder(fp16_artifact, ModelSettings(max_batch_tokens=65536))
    assert gpu.device == "cuda"
    reference = OnnxEmbedder(fp32_artifact).encode(texts)
    cosine = np.sum(gpu.encode(texts) * reference, axis=1)
    assert cosine.min() >= 0.999


def test_capped_gpu_arena_halves_and_matches(fp16_artifact, long_texts, caplog) -> None:
    """gpu_mem_limit (model.arena_max_mb) caps ORT's CUDA arena: big batches really fail there."""
    reference = OnnxEmbedder(fp16_artifact, ModelSettings(max_batch_tokens=4096)).encode(long_texts)
    capped = OnnxEmbedder(fp16_artifact, ModelSettings(max_batch_tokens=262144, min_batch_tokens=1024,
                                                         arena_max_mb=256))
    done: list[int] = []
    with caplog.at_level(logging.WARNING, logger="vecpress.tasks.embed.embedder"):
        ours = capped.encode(long_texts, on_progress=done.append)
    assert capped.budget.halvings >= 1 and capped.max_batch_tokens < 262144
    assert sum(done) == len(long_texts)
    assert np.sum(ours * reference, axis=1).min() >= 0.999  # fp16: other batch shapes round differently


def test_real_gpu_memory_pressure_halves_then_floor_error(fp16_artifact, long_texts) -> None:
    """Another tenant holds nearly all GPU memory: cudaMalloc itself fails, no cap involved."""
    import torch

    embedder = OnnxEmbedder(fp16_artifact, ModelSettings(max_batch_tokens=1 << 20, min_batch_tokens=512))
    embedder.encode(long_texts[:8])  # session, cuBLAS and cuDNN handles exist before the squeeze
    starved = OnnxEmbedder(fp16_artifact, ModelSettings(max_batch_tokens=1 << 20, min_batch_tokens=1 << 19))
    starved.encode(long_texts[:8])
    reference = OnnxEmbedder(fp16_artifact, ModelSettings(max_batch_tokens=4096)).encode(long_texts)
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - (384 << 20), dtype=torch.uint8, device="cuda")
    try:
        ours = embedder.encode(long_texts)
        assert embedder.budget.halvings >= 1, "1M-token batches fit in 384 MiB: no pressure seen"
        assert np.sum(ours * reference, axis=1).min() >= 0.999
        # A session made now finds the GPU full before any batch: a clear error, not a halving.
        with pytest.raises(OutOfMemoryFloorError, match="cannot create the CUDA session"):
            OnnxEmbedder(fp16_artifact).encode(long_texts[:8])
        ids = [f"doc-{i}#0" for i in range(len(long_texts))]
        with pytest.raises(OutOfMemoryFloorError, match=r"doc-\d+#0 \(\d+ tokens\)"):
            starved.encode(long_texts, ids=ids)
    finally:
        del hog
        torch.cuda.empty_cache()


def test_local_cuda_cluster_runs_one_gpu_worker_per_gpu(fp16_artifact, paragraphs, tmp_path) -> None:
    from vecpress.infra.cluster import dask_client
    from vecpress.infra.settings import ChunkSettings, InputSettings
    from vecpress.tasks.ingest import shard_jobs
    from vecpress.tasks.inputs.records import SourceFile

    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in paragraphs[:400]))
    with dask_client(DaskSettings()) as (client, info):
        import torch

        assert info.kind == "LocalCUDACluster" and info.gpus == torch.cuda.device_count()
        env = client.run(lambda: __import__("os").environ.get("CUDA_VISIBLE_DEVICES"))
        assert len(env) == info.gpus and all(v for v in env.values())
        chunked = client.submit(shard_jobs.chunk_files, [SourceFile(str(source), 0, "jsonl")],
                                str(tmp_path / "passages"), InputSettings(), ChunkSettings(),
                                fp16_artifact.model_dir, 10_000).result()
        shard = client.submit(shard_jobs.embed_shard, chunked.urls[0], str(tmp_path / "emb.parquet"),
                              fp16_artifact, ModelSettings(max_batch_tokens=65536),
                              info.threads_per_worker).result()
        devices = client.run(lambda: [o.device for o in cached("embedder")])
    assert shard.rows == chunked.passages > 0
    assert all(d == ["cuda"] for d in devices.values())
    _, vectors = shard_jobs.read_embeddings(shard.url)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)


def test_codec_trains_on_cuda_torch_as_well_as_faiss_cpu(fp16_artifact, paragraphs) -> None:
    from vecpress.tasks.codec.codec import fit_codec

    vectors = OnnxEmbedder(fp16_artifact).encode([t for _, t in paragraphs[:3000]])
    cpu = fit_codec(vectors, CodecSettings(pca_dim=128, pq_m=16, train_backend="faiss"))
    gpu = fit_codec(vectors, CodecSettings(pca_dim=128, pq_m=16, train_backend="auto"))
    assert gpu.report["backend"] in {"torch-cuda", "faiss-gpu"}
    f_err, g_err = cpu.report["pq_relative_error"], gpu.report["pq_relative_error"]
    assert abs(g_err - f_err) / f_err < 0.05
