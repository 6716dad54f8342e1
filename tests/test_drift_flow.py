"""The drift check inside incremental runs: warn keeps the codec, retrain rebuilds the collection."""

from __future__ import annotations

import json
import os
import random

import pytest
from helpers import vecpress

pytestmark = pytest.mark.slow


def _ingest(workspace: dict, *env: tuple[str, str]) -> dict:
    saved = dict(os.environ)
    # A few hundred passages: a fitted (not exact) codec from the first run is the subject here.
    os.environ.update({"VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
                       "VECPRESS_CODEC__MIN_FIT_VECTORS": "100",
                       "VECPRESS_CHUNK__MAX_TOKENS": "64", "VECPRESS_CHUNK__OVERLAP_TOKENS": "8",
                       **dict(env)})
    try:
        result = vecpress(workspace, "ingest", str(workspace["src"]), "--collection", "drift",
                          "--storage-root", str(workspace["root"] / "data"), "--milvus-uri",
                          str(workspace["root"] / "data" / "milvus.db"), "--json")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout[result.stdout.index("{\n"):])


def _nonsense(seed: int) -> str:
    rng = random.Random(seed)
    words = ["zq" + "".join(rng.choice("xkvjwz") for _ in range(6)) for _ in range(2000)]
    return "\n\n".join(" ".join(rng.sample(words, 30)) for _ in range(40))


def test_drift_warns_then_retrains_and_rebuilds(tmp_path, paragraphs, model_cache, fp32_artifact,
                                               dask_address, prefect_harness):
    src = tmp_path / "src"
    src.mkdir()
    (src / "docs.md").write_text("\n\n".join(t for _, t in paragraphs[:200]))
    # The real model: a random tiny one does not tell this nonsense from docstrings (tried). The
    # session's Dask workers keep its ONNX session from one run to the next.
    workspace = {"root": tmp_path, "src": src, "model_cache": model_cache,
                 "env": {"VECPRESS_DASK__ADDRESS": dask_address}}
    first = _ingest(workspace)

    (src / "same-kind.md").write_text("\n\n".join(t for _, t in paragraphs[200:260]))
    similar = _ingest(workspace, ("VECPRESS_CODEC__DRIFT_TOLERANCE", "10"))
    assert similar["codec_reused"] and similar["codec"]["codec_id"] == first["codec"]["codec_id"]
    assert similar["codec"]["drift"]["drifted"] is False
    # A tiny codec fits its own small sample too well, so set the tolerance just above what more
    # text of the same kind scores; text of another kind must exceed it.
    tolerance = ("VECPRESS_CODEC__DRIFT_TOLERANCE", f"{similar['codec']['drift']['ratio'] * 1.2:.3f}")

    (src / "nonsense.md").write_text(_nonsense(1))
    warned = _ingest(workspace, tolerance)  # default action: warn, keep the codec
    assert warned["codec"]["drift"]["drifted"] is True and warned["codec"]["drift"]["action"] == "warn"
    assert warned["codec"]["codec_id"] == first["codec"]["codec_id"]

    (src / "more-nonsense.md").write_text(_nonsense(2))
    rebuilt = _ingest(workspace, tolerance, ("VECPRESS_CODEC__DRIFT_ACTION", "retrain"))
    assert rebuilt["codec"]["codec_id"] != first["codec"]["codec_id"]
    assert rebuilt["codec_reused"] is False and rebuilt["changes"]["new"] == 4
    assert rebuilt["rows_in_milvus"] == rebuilt["passages"] == rebuilt["passages_embedded"]
