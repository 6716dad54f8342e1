"""Drift check: does a saved codec still fit new data?

A codec is reused by every later ingest into a collection. When new text differs from what it was
trained on (another domain, another language), PCA keeps less of its variance and the PQ codebooks
fit it worse, so its reconstruction error grows. The check compares the error on new vectors with the
error recorded when the codec was trained; the caller decides what to do with the verdict
(``codec.drift_action``: warn, or retrain the codec).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vecpress.infra.settings import CodecSettings
from vecpress.tasks.codec.codec import Codec, relative_error


@dataclass(frozen=True)
class DriftReport:
    codec_id: str
    vectors: int
    train_error: float  # relative reconstruction error on the training sample
    new_error: float | None  # the same measure on the new vectors (None: not judged)
    ratio: float | None
    tolerance: float
    drifted: bool
    action: str  # "none", "warn" or "retrain"
    judged: bool = True  # False: too few new vectors for a verdict (``codec.drift_min_vectors``)

    @property
    def retrain(self) -> bool:
        return self.action == "retrain"

    def to_dict(self) -> dict:
        return asdict(self)

    def message(self) -> str:
        if not self.judged:
            return (f"codec {self.codec_id} not checked for drift: {self.vectors:,} new "
                    f"vector(s), fewer than codec.drift_min_vectors")
        verdict = "drifted" if self.drifted else "fits"
        return (f"codec {self.codec_id} {verdict}: reconstruction error {self.new_error:.4f} on "
                f"{self.vectors:,} new vectors vs {self.train_error:.4f} at training "
                f"({self.ratio:.2f}x, tolerance {self.tolerance:.2f}x)"
                + (f"; action: {self.action}" if self.drifted else ""))


def drift_check(codec: Codec, new_vectors: np.ndarray, settings: CodecSettings,
                max_vectors: int = 20_000, seed: int = 0) -> DriftReport:
    """Compare the codec's reconstruction error on ``new_vectors`` (a sample is enough) with training.

    At most ``max_vectors`` rows are checked (a uniform sample), so callers may pass a whole shard.
    Fewer than ``codec.drift_min_vectors`` get no verdict (``judged`` False, never drifted): the
    error of a few vectors spreads too widely (benchmarks/drift_sample.py). The caller logs it.
    """
    if "reconstruction_relative_error" not in codec.report:
        raise ValueError(f"codec {codec.codec_id} has no reconstruction_relative_error in its "
                         "report (trained by an older vecpress); retrain it to enable drift checks")
    vectors = np.ascontiguousarray(new_vectors, dtype=np.float32)
    if len(vectors) == 0:
        raise ValueError("drift check needs at least one new vector")
    if vectors.shape[1] != codec.report["input_dim"]:
        raise ValueError(f"new vectors are {vectors.shape[1]}-d but codec {codec.codec_id} expects "
                         f"{codec.report['input_dim']}-d embeddings (another model?)")
    if len(vectors) > max_vectors:
        rows = np.random.default_rng(seed).choice(len(vectors), size=max_vectors, replace=False)
        vectors = vectors[np.sort(rows)]
    train_error = float(codec.report["reconstruction_relative_error"])
    if len(vectors) < settings.drift_min_vectors:
        return DriftReport(codec_id=codec.codec_id, vectors=len(vectors), train_error=train_error,
                           new_error=None, ratio=None,
                           tolerance=settings.drift_tolerance, drifted=False, action="none",
                           judged=False)
    new_error = relative_error(vectors, codec.reconstruct(vectors))
    ratio = new_error / max(train_error, 1e-12)
    drifted = ratio > settings.drift_tolerance
    report = DriftReport(codec_id=codec.codec_id, vectors=len(vectors), train_error=train_error,
                         new_error=new_error, ratio=ratio, tolerance=settings.drift_tolerance,
                         drifted=drifted, action=settings.drift_action if drifted else "none")
    return report
