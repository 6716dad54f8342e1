"""ONNX export and inference against the sentence-transformers reference (real model, real text)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vecpress.tasks.embedding import OnnxEmbedder
from vecpress.tasks.model_files import read_model_spec, resolve_model_dir
from vecpress.tasks.onnx_export import ExportError, export_model


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
    small = OnnxEmbedder(fp32_artifact, max_batch_tokens=128).encode(texts)
    large = OnnxEmbedder(fp32_artifact, max_batch_tokens=16384).encode(texts)
    np.testing.assert_allclose(small, large, atol=2e-5)


def test_tokenising_windows_keep_input_order(fp32_artifact, paragraphs, monkeypatch) -> None:
    """Windows tokenised ahead (here of 37 passages) give the same rows as one window."""
    import vecpress.tasks.embedding as embedding

    texts = [t for _, t in paragraphs[:200]] + ["word " * 600]
    single = OnnxEmbedder(fp32_artifact)
    whole = single.encode(texts)
    monkeypatch.setattr(embedding, "WINDOW", 37)
    embedder = OnnxEmbedder(fp32_artifact)
    done: list[int] = []
    windowed = embedder.encode(texts, on_progress=done.append)
    np.testing.assert_allclose(windowed, whole, atol=2e-5)
    assert sum(done) == len(texts) and embedder.truncated == single.truncated >= 1


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
