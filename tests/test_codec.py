"""PCA + PQ codec on real embeddings: fit, L2 geometry, save/load, archive round trip."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from vecpress.infra.settings import CodecSettings
from vecpress.tasks.codec import Codec, CodecError, archive_table, fit_codec, fixed_list_to_numpy
from vecpress.tasks.embedding import OnnxEmbedder


@pytest.fixture(scope="module")
def embeddings(fp32_artifact, paragraphs) -> np.ndarray:
    return OnnxEmbedder(fp32_artifact).encode([t for _, t in paragraphs[:1500]])


def _recall(truth: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found, strict=True)]))


def test_fit_reports_and_pca_keeps_neighbours(embeddings: np.ndarray) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=128, pq_m=16, sample_size=1500))
    report = codec.report
    assert report["pca_dim"] == 128 and report["code_bytes"] == 16
    assert 0.5 < report["explained_variance"] <= 1.0
    assert 0.0 < report["pq_relative_error"] < 1.0
    queries, base = embeddings[:100], embeddings[100:]
    truth = np.argsort(-(queries @ base.T), axis=1)[:, :10]
    projected = codec.project(base)
    l2 = faiss.IndexFlatL2(codec.dim)
    l2.add(projected)
    _, found = l2.search(codec.project(queries), 10)
    assert _recall(truth, found) >= 0.75  # NOTES: PCA-128 with L2 keeps ~0.82 of top-10


def test_codes_are_stable_across_save_and_load(embeddings: np.ndarray, tmp_path) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8, sample_size=1000))
    codec.save(str(tmp_path / "codec"))
    loaded = Codec.load(str(tmp_path / "codec"))
    assert loaded.codec_id == codec.codec_id
    np.testing.assert_array_equal(loaded.encode(embeddings[:50]), codec.encode(embeddings[:50]))
    np.testing.assert_allclose(loaded.project(embeddings[:50]), codec.project(embeddings[:50]))


def test_codec_id_depends_on_parameters_and_sample(embeddings: np.ndarray) -> None:
    a = fit_codec(embeddings[:600], CodecSettings(pca_dim=64, pq_m=8))
    b = fit_codec(embeddings[:600], CodecSettings(pca_dim=64, pq_m=8))
    c = fit_codec(embeddings[:700], CodecSettings(pca_dim=64, pq_m=8))
    assert a.codec_id == b.codec_id != c.codec_id


def test_archive_round_trip(embeddings: np.ndarray) -> None:
    codec = fit_codec(embeddings, CodecSettings(pca_dim=64, pq_m=8))
    pca = codec.project(embeddings[:10])
    table = archive_table(np.arange(10), codec.encode(embeddings[:10]), pca)
    back = fixed_list_to_numpy(table.column("pca_fp16"), np.float32)
    np.testing.assert_allclose(back, pca, atol=2e-3)
    assert fixed_list_to_numpy(table.column("pq_codes"), np.uint8).shape == (10, 8)


def test_bad_settings_are_explained(embeddings: np.ndarray) -> None:
    with pytest.raises(ValueError, match="must divide"):
        CodecSettings(pca_dim=100, pq_m=16)
    with pytest.raises(CodecError, match="exceeds the embedding dimension"):
        fit_codec(embeddings, CodecSettings(pca_dim=512, pq_m=16))
