"""Query and document prompts: the model's own (sentence-transformers ``prompts``) or settings',
applied as ``SentenceTransformer.encode(prompt_name=...)`` applies them, and part of the model's
identity so that a collection is never searched with other prompts than it was built with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import export_for_settings, export_model
from vecpress.tasks.embed.model_files import read_model_spec, with_prompts
from vecpress.tasks.inputs.corpus import probe_passages

PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def prompted_model(tiny_model: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with an e5-style prompt pair in its sentence-transformers config."""
    folder = tmp_path_factory.mktemp("prompted") / "tiny-prompted"
    shutil.copytree(tiny_model, folder)
    config = folder / "config_sentence_transformers.json"
    declared = json.loads(config.read_text()) if config.is_file() else {}
    config.write_text(json.dumps({**declared, "prompts": PROMPTS, "default_prompt_name": None}))
    return folder


def test_the_models_own_prompts_match_sentence_transformers(prompted_model: Path,
                                                            tmp_path: Path, paragraphs) -> None:
    from sentence_transformers import SentenceTransformer

    spec = read_model_spec(prompted_model)
    assert (spec.query_prompt, spec.document_prompt) == ("query: ", "passage: ")
    artifact = export_model(spec, "fp32", tmp_path, probe_passages)
    assert (artifact.query_prompt, artifact.document_prompt) == ("query: ", "passage: ")
    texts = [t for _, t in paragraphs[:32]]
    reference = SentenceTransformer(str(prompted_model), device="cpu")
    embedder = OnnxEmbedder(artifact)
    for ours, name in ((embedder.encode_queries(texts), "query"),
                       (embedder.encode_documents(texts), "passage")):
        theirs = reference.encode(texts, prompt_name=name, convert_to_numpy=True)
        np.testing.assert_allclose(ours, theirs, atol=2e-4)
    # The prompts matter: a query and a passage of the same text differ.
    assert not np.allclose(embedder.encode_queries(texts[:4]), embedder.encode_documents(texts[:4]))


def test_settings_prompts_replace_the_models_and_make_another_artifact(
        prompted_model: Path, tmp_path: Path) -> None:
    own = export_for_settings(ModelSettings(path=str(prompted_model)), tmp_path)
    bare = export_for_settings(ModelSettings(path=str(prompted_model), query_prompt="",
                                             document_prompt=""), tmp_path)
    custom = export_for_settings(ModelSettings(path=str(prompted_model),
                                               query_prompt="Represent the question: "), tmp_path)
    assert (bare.query_prompt, bare.document_prompt) == ("", "")
    assert (custom.query_prompt, custom.document_prompt) == ("Represent the question: ",
                                                             "passage: ")
    # Three identities: a build records its artifact, so prompts are never mixed in a collection.
    assert len({own.name, bare.name, custom.name}) == 3
    texts = ["how do I open a file", "sockets and their timeouts"]
    np.testing.assert_allclose(OnnxEmbedder(bare).encode_queries(texts),
                               OnnxEmbedder(bare).encode(texts))
    spec = with_prompts(read_model_spec(prompted_model), None, "")
    assert (spec.query_prompt, spec.document_prompt) == ("query: ", "")


def test_a_default_prompt_applies_to_both_sides(prompted_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "instructed"
    shutil.copytree(prompted_model, folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"retrieval": "Represent this for retrieval: "},
         "default_prompt_name": "retrieval"}))
    spec = read_model_spec(folder)
    assert spec.query_prompt == spec.document_prompt == "Represent this for retrieval: "
