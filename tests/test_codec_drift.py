"""Drift check on real embeddings: in-distribution text passes, another kind of text fails."""

from __future__ import annotations

import inspect
import json
import os

import numpy as np
import pytest

from vecpress.infra.settings import CodecSettings
from vecpress.tasks.codec.codec import fit_codec
from vecpress.tasks.codec.drift import drift_check
from vecpress.tasks.embed.embedder import OnnxEmbedder


@pytest.fixture(scope="module")
def embedder(fp32_artifact) -> OnnxEmbedder:
    return OnnxEmbedder(fp32_artifact)


@pytest.fixture(scope="module")
def docstrings(docstring_embeddings) -> np.ndarray:
    vectors = docstring_embeddings
    return vectors[np.random.default_rng(0).permutation(len(vectors))]


@pytest.fixture(scope="module")
def source_lines(embedder) -> np.ndarray:
    """Another domain: lines of Python source code (not docstrings) of the os module."""
    lines = [line.strip() for line in inspect.getsource(os).splitlines() if len(line.strip()) > 20]
    return embedder.encode(lines[:400])


def test_same_kind_of_text_fits_and_other_text_drifts(docstrings, source_lines) -> None:
    settings = CodecSettings(pca_dim=64, pq_m=8, drift_tolerance=1.25, drift_action="retrain")
    codec = fit_codec(docstrings[:1000], settings)
    same = drift_check(codec, docstrings[1000:], settings)
    assert not same.drifted and same.action == "none" and same.ratio < 1.25
    other = drift_check(codec, source_lines, settings)
    assert other.drifted and other.retrain and other.ratio > same.ratio
    assert "drifted" in other.message() and codec.codec_id in other.message()
    assert other.vectors == len(source_lines)


def test_warn_action_and_input_checks(docstrings, source_lines) -> None:
    settings = CodecSettings(pca_dim=64, pq_m=8, drift_tolerance=1.01)
    codec = fit_codec(docstrings[:1000], settings)
    report = drift_check(codec, source_lines, settings, max_vectors=100)
    assert report.action == "warn" and not report.retrain and report.vectors == 100
    with pytest.raises(ValueError, match="expects 384-d embeddings"):
        drift_check(codec, source_lines[:, :100], settings)


def test_too_few_new_vectors_get_no_verdict(docstrings, source_lines) -> None:
    """A run of a few passages is not judged (one same-kind vector read as drifted 12% of the
    time, benchmarks/results/drift_sample.json): with ``retrain`` that rebuilt the collection.
    From ``codec.drift_min_vectors`` on, the same text is judged, and other text drifts."""
    settings = CodecSettings(pca_dim=64, pq_m=8, drift_tolerance=1.05, drift_action="retrain",
                             drift_min_vectors=32)
    codec = fit_codec(docstrings[:1000], settings)
    few = drift_check(codec, source_lines[:31], settings)
    assert (few.judged, few.drifted, few.action, few.ratio) == (False, False, "none", None)
    assert "not checked for drift: 31 new vector(s)" in few.message()
    json.dumps(few.to_dict(), allow_nan=False)  # the run summary's JSON takes it as it is
    enough = drift_check(codec, source_lines[:32], settings)
    assert enough.judged and enough.drifted and enough.retrain
