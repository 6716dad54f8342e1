"""The codec's default shape follows the data and the model: PCA dimension from the sample's
explained variance, M a divisor of it, and narrow models need no settings changed."""

from __future__ import annotations

import numpy as np

from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.codec.choose import curve_due, fit_new_codec, recall_curve
from vecpress.tasks.codec.shape import resolve_shape


def _spectrum(n: int, scales: np.ndarray, seed: int = 0) -> np.ndarray:
    """``n`` vectors whose principal variances are ``scales`` ** 2, in a random orientation."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((len(scales), len(scales))))
    x = (rng.standard_normal((n, len(scales))) * scales) @ basis.T
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_default_pca_dimension_keeps_99_percent_of_the_variance() -> None:
    # 384 dimensions, variance falling off smoothly, as sentence embeddings do
    sample = _spectrum(4000, np.exp(-np.arange(384) / 90.0))
    shape = resolve_shape(sample, CodecSettings())
    centred = sample - sample.mean(axis=0)
    eig = np.sort(np.linalg.eigvalsh(centred.T.astype(np.float64) @ centred))[::-1]
    kept = eig[: shape.pca_dim].sum() / eig.sum()
    assert shape.pca_dim % shape.pq_m == 0 and shape.pq_m == 32
    assert kept >= 0.99 and eig[: shape.pca_dim - 32].sum() / eig.sum() < 0.99  # the least such
    assert resolve_shape(sample, CodecSettings(pca_variance=0.9)).pca_dim < shape.pca_dim
    # a configured dimension is kept as it is
    assert resolve_shape(sample, CodecSettings(pca_dim=128, pq_m=16)).pca_dim == 128


def test_a_64_d_model_fits_with_default_settings_and_auto_tune() -> None:
    sample = _spectrum(1000, np.exp(-np.arange(64) / 20.0))
    for settings in (CodecSettings(), CodecSettings(recall_target=0.95, autotune_queries=100)):
        codec, lines = fit_new_codec(sample, settings, MilvusSettings())
        assert codec.dim <= 64 and codec.dim % codec.report["pq_m"] == 0
        assert codec.project(sample[:5]).shape == (5, codec.dim)
    assert any("chosen" in line for line in lines)  # the auto-tune ran on its own grid
    # Without a target the codec is fitted as configured; the curve around it comes apart.
    settings = CodecSettings(autotune_queries=100)
    codec, lines = fit_new_codec(sample, settings, MilvusSettings())
    assert lines == [] and curve_due(codec, len(sample), settings)
    assert not curve_due(codec, 700, CodecSettings())  # 700 vectors < 4 x 200 queries
    table, lines = recall_curve(sample, settings, MilvusSettings())
    assert table["applied"] is False and table["chosen"]["pq_m"] == codec.report["pq_m"]
    assert {r["pq_m"] for r in table["rows"]} >= {codec.report["pq_m"]} and lines
    # The curve chose nothing: its lines say it is a report around the configured codec, name
    # the setting that would let it choose, and mark the configured row, never a "chosen" one.
    assert "report only" in lines[0] and "codec.recall_target" in lines[0]
    assert "--recall-target" in lines[0] and not lines[0].startswith("auto-tune")
    configured = [line for line in lines if line.endswith("<- configured")]
    assert len(configured) == 1 and f" {codec.report['pq_m']:>4} " in configured[0]
    assert len(lines) == 2 + len(table["rows"])  # the whole curve: every configuration measured
    assert not any("chosen" in line or "chose" in line for line in lines)


def test_a_dimension_no_default_m_divides_gets_a_divisor() -> None:
    sample = _spectrum(2000, np.ones(50))  # flat spectrum: every dimension is needed
    shape = resolve_shape(sample, CodecSettings())
    assert (shape.pca_dim, shape.pq_m) == (50, 25)


def test_milvus_holds_the_leading_components_and_rescoring_all_of_them() -> None:
    """``codec.milvus_dim``: the width Milvus stores is capped at the PCA dim and a multiple of
    M; the codec's Milvus vectors are the leading (highest-variance) PCA components, and the
    width is part of the codec id only when it is not the whole PCA vector."""
    from vecpress.tasks.codec.codec import fit_codec
    from vecpress.tasks.codec.shape import milvus_width

    assert milvus_width(CodecSettings(pca_dim=320, pq_m=32)) == 128  # the default
    assert milvus_width(CodecSettings(pca_dim=320, pq_m=32, milvus_dim=100)) == 96
    assert milvus_width(CodecSettings(pca_dim=320, pq_m=32, milvus_dim=None)) == 320
    assert milvus_width(CodecSettings(pca_dim=64, pq_m=8)) == 64  # narrower than the default
    sample = _spectrum(3000, np.exp(-np.arange(96) / 30.0))
    narrow = fit_codec(sample, CodecSettings(pca_dim=64, pq_m=8, milvus_dim=32))
    whole = fit_codec(sample, CodecSettings(pca_dim=64, pq_m=8, milvus_dim=None))
    assert (narrow.milvus_dim, whole.milvus_dim, narrow.dim) == (32, 64, 64)
    projected = narrow.project(sample[:5])
    np.testing.assert_array_equal(narrow.for_milvus(projected), projected[:, :32])
    assert whole.for_milvus(projected) is projected
    variances = narrow.project(sample).var(axis=0)
    assert variances[:32].min() >= variances[32:].max()  # the leading ones carry the most
    assert narrow.codec_id != whole.codec_id
    assert whole.codec_id == fit_codec(sample, CodecSettings(pca_dim=64, pq_m=8)).codec_id


def test_the_curves_quicker_pq_training_keeps_its_recalls() -> None:
    """The run report's curve trains its codebooks with fewer iterations on fewer vectors than
    the auto-tune that chooses a codec (FAISS's own training): its recalls stay close."""
    from vecpress.tasks.codec.autotune import FULL_PQ_TRAINING, autotune
    from vecpress.tasks.codec.choose import CURVE_PQ_TRAINING, REPORT_TARGET, report_grid

    sample = _spectrum(10_500, np.exp(-np.arange(32) / 10.0))
    settings = CodecSettings(autotune_queries=100, pq_m=8)
    grid = report_grid(resolve_shape(sample, settings))
    full = autotune(sample, grid, MilvusSettings(), REPORT_TARGET, pq_training=FULL_PQ_TRAINING)
    table, _ = recall_curve(sample, settings, MilvusSettings())
    assert CURVE_PQ_TRAINING[0] < FULL_PQ_TRAINING[0] and 256 * CURVE_PQ_TRAINING[1] < 10_500
    quick = {r["pq_m"]: r for r in table["rows"]}
    assert len(quick) == len(full.rows) == 3
    for row in full.rows:
        assert abs(quick[row.pq_m]["recall_ann"] - row.recall_ann) <= 0.05
        assert abs(quick[row.pq_m]["recall_rescored"] - row.recall_rescored) <= 0.03
