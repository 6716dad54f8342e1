"""The exported model on the storage root: published once, copied once per host, and a copy runs
from its own files (tokenizer included) whatever the exporting host's paths were."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import fsspec
import pytest

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.published import load_published, local_copy, publish


def test_a_published_model_runs_from_a_copy_on_another_host(fp32_artifact, tmp_path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    root = "memory://published-test"
    published = publish(fp32_artifact, root)
    fs = fsspec.filesystem("memory")
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(published.store_url.removeprefix("memory://"),
                                                detail=False)}
    assert {"model.onnx", "meta.json", "tokenizer.json", "complete"} <= names
    assert publish(fp32_artifact, root).store_url == published.store_url  # once

    # "Another host": its own temp folder, and the exporter's model directory does not exist.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "worker-tmp"))
    (tmp_path / "worker-tmp").mkdir()
    gone = published.__class__(**{**published.__dict__, "model_dir": "/nonexistent/model",
                                  "onnx_path": "/nonexistent/model.onnx"})
    copy = local_copy(gone)
    assert Path(copy.onnx_path).is_file() and copy.onnx_path.startswith(str(tmp_path))
    assert Path(copy.model_dir, "tokenizer.json").is_file()
    texts = ["a published model gives the same vectors", "on every host"]
    model = ModelSettings()
    here, there = OnnxEmbedder(fp32_artifact, model), OnnxEmbedder(copy, model)
    try:
        assert (abs(here.encode(texts) - there.encode(texts)) < 1e-6).all()
    finally:
        here.close()
        there.close()

    # A search host: fetched into its model cache; loaded again later from that cache, the copy
    # names itself as the tokenizer's folder, not the exporter's path in meta.json.
    cache = tmp_path / "search-cache"
    fetched = load_published(root, published.name, cache)
    assert fetched is not None and Path(fetched.model_dir) == cache / published.name
    meta = json.loads((cache / published.name / "meta.json").read_text())
    assert meta["model_dir"] != fetched.model_dir
    again = ModelArtifact.load(cache / published.name)
    assert Path(again.model_dir) == (cache / published.name).resolve()
    assert load_published(root, "no-such-model", cache) is None
