"""`vecpress embed` and `vecpress export-model`: the engine on its own, through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from helpers import vecpress

from vecpress.tasks.embed.embedder import OnnxEmbedder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, paragraphs, model_cache) -> dict:
    root = tmp_path_factory.mktemp("embed")
    records = paragraphs[400:460]
    (root / "in.jsonl").write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in records) + "{broken\n")
    return {"root": root, "records": records, "model_cache": model_cache}


def test_embed_writes_one_vector_per_record_in_order(inputs, fp32_artifact) -> None:
    out = inputs["root"] / "vectors.parquet"
    result = vecpress(inputs, "embed", str(inputs["root"] / "in.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "line 61: malformed JSON" in result.stderr  # reported, the rest embedded
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == [i for i, _ in inputs["records"]]
    vectors = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = OnnxEmbedder(fp32_artifact).encode([t for _, t in inputs["records"][:5]])
    np.testing.assert_allclose(vectors[:5], expected, atol=1e-5)


def test_embed_to_npy_writes_ids_beside(inputs) -> None:
    out = inputs["root"] / "vectors.npy"
    result = vecpress(inputs, "embed", str(inputs["root"] / "in.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert np.load(out).shape == (60, 384)
    ids = Path(str(out).replace(".npy", ".ids.txt")).read_text().splitlines()
    assert ids == [i for i, _ in inputs["records"]]


def test_export_model_reports_fidelity_and_is_cached(inputs, model_cache, fp32_artifact) -> None:
    result = vecpress(inputs, "export-model", fp32_artifact.model_dir, "--variant", "fp32",
                      "--cache-dir", str(model_cache))
    assert result.returncode == 0, result.stderr
    figures = re.search(r"min cosine ([\d.]+), mean ([\d.]+), neighbour recall@10 ([\d.]+)",
                        result.stdout)
    assert figures is not None, result.stdout
    assert float(figures[1]) >= 0.9999 and float(figures[3]) >= 0.99
    assert str(model_cache) in result.stdout


def test_export_model_rejects_a_non_model_directory(inputs, tmp_path) -> None:
    result = vecpress(inputs, "export-model", str(tmp_path), "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 2
    assert "no config.json" in result.stderr
    missing = tmp_path / "sentence-transformers" / "all-mpnet-base-v2"  # a model id, say
    result = vecpress(inputs, "export-model", str(missing), "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 2
    assert f"{missing}: no such directory" in " ".join(result.stderr.split())


def test_embed_with_tokeniser_processes(inputs, fp32_artifact, monkeypatch) -> None:
    """The CLI with tokeniser processes (spawned from `python -m vecpress`) gives the same vectors."""
    monkeypatch.setenv("VECPRESS_MODEL__TOKENIZER_PROCESSES", "2")
    out = inputs["root"] / "pooled.parquet"
    result = vecpress(inputs, "embed", str(inputs["root"] / "in.jsonl"), "--out", str(out))
    assert result.returncode == 0, result.stderr
    vectors = np.stack(pq.read_table(out).column("embedding").to_numpy(zero_copy_only=False))
    expected = OnnxEmbedder(fp32_artifact).encode([t for _, t in inputs["records"]])
    np.testing.assert_allclose(vectors, expected, atol=2e-5)


def test_embed_refuses_an_unsupported_output_before_any_work(inputs, tmp_path) -> None:
    """The --out suffix was checked only once everything was embedded (then exit 1, a
    traceback): it is a usage error, exit 2 in one line, before the model is even exported."""
    cache = tmp_path / "cache"  # nothing is exported into it: the model is never touched
    out = tmp_path / "vectors.csv"
    result = vecpress({"model_cache": cache}, "embed", str(inputs["root"] / "in.jsonl"),
                      "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "unsupported output; use a .parquet or .npy file name" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not cache.exists()
    # A folder that holds no model is a usage error too (it was a traceback and exit 1).
    result = vecpress({"model_cache": cache}, "embed", str(inputs["root"] / "in.jsonl"),
                      "--out", str(tmp_path / "vectors.parquet"), "--model", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "no config.json" in result.stderr and "Traceback" not in result.stderr


def test_embed_with_no_usable_record_exits_2_and_writes_nothing(inputs, fp32_artifact,
                                                                 tmp_path) -> None:
    """Only bad records: exit 2 in one line (as ingest's "no usable input"), each bad record
    reported, and no file: an empty one exited 0 and passed for a result."""
    source = tmp_path / "bad.jsonl"
    source.write_text('{broken\n{"id": "n", "text": 5}\n')
    out = tmp_path / "vectors.parquet"
    result = vecpress(inputs, "embed", str(source), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "nothing to embed" in result.stderr and "2 input error(s)" in result.stderr
    assert "line 1: malformed JSON" in result.stderr and "line 2" in result.stderr
    assert not out.exists()
