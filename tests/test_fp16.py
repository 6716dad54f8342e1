"""fp16 export and inference on a machine without CUDA: the CPU provider runs the fp16 graph."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import vecpress

from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import export_model
from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp16_artifact(model_cache, paragraphs) -> ModelArtifact:
    spec = read_model_spec(resolve_model_dir(None))
    return export_model(spec, "fp16", model_cache, lambda: [t for _, t in paragraphs[:64]])


def test_fp16_export_passes_the_gate(fp16_artifact) -> None:
    import onnx

    assert fp16_artifact.variant == "fp16" and fp16_artifact.min_cosine >= 0.999
    assert fp16_artifact.checked_on in {"cpu", "cuda"}
    assert fp16_artifact.fusion.startswith("bert: ") and "Attention×6" in fp16_artifact.fusion
    graph = onnx.load(fp16_artifact.onnx_path).graph
    weights = [t for t in graph.initializer if len(t.dims) == 2]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types


def test_fp16_embeddings_match_fp32(fp16_artifact, fp32_artifact, paragraphs, caplog) -> None:
    import onnxruntime as ort

    texts = [t for _, t in paragraphs[300:364]]
    with caplog.at_level(logging.WARNING, logger="vecpress.tasks.embed.embedder"):
        embedder = OnnxEmbedder(fp16_artifact)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert embedder.device == "cpu"
        assert any("fp16 model on the CPU provider" in r.getMessage() for r in caplog.records)
    ours = embedder.encode(texts)
    reference = OnnxEmbedder(fp32_artifact).encode(texts)
    assert ours.dtype == np.float32
    assert np.sum(ours * reference, axis=1).min() >= 0.999


def test_embed_cli_with_fp16(fp16_artifact, model_cache, paragraphs, tmp_path) -> None:
    records = paragraphs[500:520]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in records))
    out = tmp_path / "v.parquet"
    result = vecpress({"model_cache": model_cache}, "embed", str(source), "--out", str(out),
                      "--variant", "fp16")
    assert result.returncode == 0, result.stderr
    assert "(fp16, 384-d" in result.stderr
    assert pq.read_table(out).column("id").to_pylist() == [i for i, _ in records]
    vectors = np.stack(pq.read_table(out).column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
