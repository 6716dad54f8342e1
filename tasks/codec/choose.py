"""A collection's codec: fitted on a first run's sample (tuned to a recall target when one is
set), or reused on later runs after a drift check of their new vectors.

This is the policy the ingest flow applies between embedding and encoding; it runs without
Prefect, on a sample of embeddings, and returns what it measured for the caller to log.
"""

from __future__ import annotations

import numpy as np

from vecpress.infra.settings import CodecSettings, MilvusSettings
from vecpress.tasks.codec.autotune import autotune
from vecpress.tasks.codec.codec import Codec, fit_codec, fit_exact, is_exact
from vecpress.tasks.codec.drift import DriftReport, drift_check
from vecpress.tasks.codec.shape import resolve_shape

REPORT_TARGET = 0.95  # reference line of the recall-vs-bytes curve when no target is set
CURVE_PQ_TRAINING = (4, 24)  # the curve's PQ k-means: iterations, training vectors a centroid
DRIFT_SAMPLE = 5000  # new vectors compared with the codec's training error


class CodecDriftError(RuntimeError):
    """New data no longer fits the collection's codec and ``codec.drift_action`` is retrain."""

    def __init__(self, report: DriftReport) -> None:
        super().__init__(report.message())
        self.report = report


def report_grid(codec: CodecSettings) -> CodecSettings:
    """The configured PCA dim with M, M/2 and M/4: the recall-vs-bytes curve around the choice.
    ``codec`` has a concrete PCA dim (``resolve_shape``)."""
    pca_dim = codec.pca_dim
    if pca_dim is None:
        raise ValueError("report_grid needs a resolved codec.pca_dim (resolve_shape first)")
    pq_ms = sorted({m for m in (codec.pq_m // 4, codec.pq_m // 2, codec.pq_m)
                    if m >= 1 and pca_dim % m == 0})
    return codec.model_copy(update={
        "autotune_pca_dims": [codec.pca_dim], "autotune_pq_m": pq_ms,
        "autotune_rotation": [codec.random_rotation], "autotune_refine": [codec.refine],
        "autotune_probe_shares": [],
        "autotune_rescore_factors": [], "autotune_latency_ms": None})


def fit_new_codec(sample: np.ndarray, codec: CodecSettings, milvus: MilvusSettings,
                  similarity: str = "cosine") -> tuple[Codec, list[str]]:
    """Fit the codec of a new collection on ``sample``; also returns the auto-tune table's lines.

    A sample smaller than ``codec.min_fit_vectors`` gets the exact codec (whole vectors) until
    the collection grows (``outgrown``). With ``codec.recall_target`` the auto-tuned PCA dim and
    M are used. Without one the codec is fitted as configured, and the recall-vs-bytes curve
    around it is ``recall_curve``'s, measured beside the run rather than before its encoding
    (it costs several fits: benchmarks/results/codec_critical_path.json). ``similarity``: the
    model's (``tasks.similarity``), which the search the codec serves and its tuning rank by.
    """
    if len(sample) < codec.min_fit_vectors:
        return fit_exact(sample, f"{len(sample)} passages, fewer than codec.min_fit_vectors "
                                 f"({codec.min_fit_vectors})", similarity), []
    codec = resolve_shape(sample, codec)
    if codec.recall_target is None:
        return fit_codec(sample, codec, similarity=similarity), []
    tuned = autotune(sample, codec, milvus, similarity=similarity)
    table = tuned.to_dict() | {"applied": True}
    return fit_codec(sample, tuned.settings(codec), table, similarity), tuned.lines()


def curve_due(fitted: Codec, sample_size: int, codec: CodecSettings) -> bool:
    """Whether ``recall_curve`` has a curve to measure for a codec just fitted on ``sample_size``
    vectors: a fitted (not exact) codec, not auto-tuned, and a sample that can spare the queries."""
    return (not is_exact(fitted) and "autotune" not in fitted.report
            and sample_size >= 4 * codec.autotune_queries)


def recall_curve(sample: np.ndarray, codec: CodecSettings, milvus: MilvusSettings,
                 similarity: str = "cosine") -> tuple[dict, list[str]]:
    """The recall-vs-bytes curve around the configured codec (``report_grid``), measured on the
    codec's sample, for the run report; it does not change the choice. (table, its lines).

    Its codebooks train quicker than the auto-tune's (``CURVE_PQ_TRAINING``), on a worker beside
    the embedding, whose seconds it takes: figures in benchmarks/results/
    recall_curve_cpu_minilm_int8_20000.json (20k MiniLM vectors, one thread)."""
    codec = resolve_shape(sample, codec)
    tuned = autotune(sample, report_grid(codec), milvus, REPORT_TARGET, similarity,
                     CURVE_PQ_TRAINING)
    tuned.chosen = next((r for r in tuned.rows if r.pq_m == codec.pq_m), tuned.chosen)
    return tuned.to_dict() | {"applied": False}, tuned.lines(report_only=True)


def outgrown(codec: Codec, rows: int, settings: CodecSettings) -> bool:
    """A small collection's exact codec is replaced by a fitted one once the collection holds
    ``codec.min_fit_vectors`` passages: the ingest that gets it there rebuilds it compressed."""
    return is_exact(codec) and rows >= settings.min_fit_vectors


def reuse_codec(codec: Codec, new_sample: np.ndarray, settings: CodecSettings) -> DriftReport | None:
    """Drift-check the collection's codec on ``new_sample``; the verdict goes into its report.

    Raises CodecDriftError when the data drifted and ``codec.drift_action`` is retrain; returns
    the report (None for codecs trained before drift checks existed) for the caller to log.
    """
    if "reconstruction_relative_error" not in codec.report:
        return None
    report = drift_check(codec, new_sample, settings)
    codec.report = codec.report | {"drift": report.to_dict()}
    if report.retrain:
        raise CodecDriftError(report)
    return report
