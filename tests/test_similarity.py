"""The model's similarity function end to end: a model whose sentence-transformers config says
dot product (or Euclidean) is embedded without normalising, indexed with that Milvus metric,
rescored and scored with it, and its hits' scores equal ``SentenceTransformer.similarity``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import write_jsonl_texts

from vecpress.infra.index_plan import plan_index, replan
from vecpress.infra.settings import CodecSettings, MilvusSettings, Settings
from vecpress.tasks.codec.codec import fit_codec, fit_exact
from vecpress.tasks.embed.model_files import ModelDirError, read_model_spec
from vecpress.tasks.similarity import scores, similarity_matrix


def _model_with(tiny_model: str, folder: Path, similarity: str, normalize: bool) -> Path:
    """The tiny BERT declaring ``similarity``, with or without its Normalize module."""
    shutil.copytree(tiny_model, folder)
    modules = json.loads((folder / "modules.json").read_text())
    if not normalize:
        modules = [m for m in modules if not m["type"].endswith("Normalize")]
    (folder / "modules.json").write_text(json.dumps(modules))
    config = folder / "config_sentence_transformers.json"
    config.write_text(json.dumps({**json.loads(config.read_text()),
                                  "similarity_fn_name": similarity}))
    return folder


def test_the_model_config_decides_the_similarity_and_whether_to_normalise(
        tiny_model: str, tmp_path: Path) -> None:
    dot = read_model_spec(_model_with(tiny_model, tmp_path / "dot", "dot", normalize=False))
    assert (dot.similarity, dot.normalize) == ("dot", False)
    euclid = read_model_spec(_model_with(tiny_model, tmp_path / "l2", "euclidean", False))
    assert (euclid.similarity, euclid.normalize) == ("euclidean", False)
    # Cosine compares directions: normalised in the graph although the model leaves it out.
    cosine = read_model_spec(_model_with(tiny_model, tmp_path / "cos", "cosine", False))
    assert (cosine.similarity, cosine.normalize) == ("cosine", True)
    assert read_model_spec(Path(tiny_model)).similarity == "cosine"
    with pytest.raises(ModelDirError, match="declares similarity_fn_name 'manhattan'; vecpress "
                                            "serves cosine, dot, euclidean"):
        read_model_spec(_model_with(tiny_model, tmp_path / "l1", "manhattan", False))


def test_the_codec_keeps_dot_products_and_distances_through_pca() -> None:
    """Full-width PCA only rotates and centres: a dot-product codec's uncentred queries plus
    their offsets give back x·q exactly, a Euclidean one's distances ‖x − q‖."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((1200, 32)) * rng.uniform(0.5, 3, (1200, 1)) + 2.0).astype(np.float32)
    q = (rng.standard_normal((5, 32)) + 1.0).astype(np.float32)
    settings = CodecSettings(pca_dim=32, pq_m=8)
    dot = fit_codec(x, settings, similarity="dot")
    truth = x @ q.T
    ours = dot.project(x) @ dot.project_queries(q).T + dot.query_offsets(q)[None, :]
    np.testing.assert_allclose(ours, truth, rtol=1e-4, atol=1e-3)
    assert np.abs(dot.query_offsets(q)).min() > 1  # the centring matters to the score
    euclid = fit_codec(x, settings, similarity="euclidean")
    d = ((euclid.project(x)[:, None, :] - euclid.project_queries(q)[None]) ** 2).sum(-1)
    np.testing.assert_allclose(scores(d, "euclidean"), similarity_matrix(q, x, "euclidean").T,
                               rtol=1e-4, atol=1e-3)
    cosine = fit_codec(x, settings)
    assert len({dot.codec_id, euclid.codec_id, cosine.codec_id}) == 3
    assert "similarity" not in cosine.codec_id and cosine.similarity == "cosine"
    assert fit_exact(x[:10], "small", "dot").codec_id != fit_exact(x[:10], "small").codec_id
    # The Milvus metric is part of the plan; an index of another metric is rebuilt.
    ip = plan_index(MilvusSettings(), 5000, 8, 8, metric="IP")
    assert ip.metric == "IP" and replan(plan_index(MilvusSettings(), 5000, 8, 8), ip, True)[1]


@pytest.mark.slow
@pytest.mark.parametrize(("similarity", "codec"), [
    ("dot", {"pca_dim": 64, "pq_m": 8, "min_fit_vectors": 200}),  # fitted: centred PCA
    ("euclidean", {}),  # below min_fit_vectors: the exact codec, searched FLAT
])
def test_hits_score_as_sentence_transformers_similarity(
        similarity: str, codec: dict, tiny_model: str, tmp_path: Path, model_cache: Path,
        paragraphs: list[tuple[str, str]], dask_address: str, prefect_harness) -> None:
    from sentence_transformers import SentenceTransformer

    import vecpress

    model = _model_with(tiny_model, tmp_path / similarity, similarity, normalize=False)
    texts = list(dict.fromkeys(t for _, t in paragraphs if 40 < len(t) < 300))[:320]
    corpus = write_jsonl_texts(tmp_path / "corpus.jsonl", texts, "p")
    root = tmp_path / "root"
    settings = Settings(collection="sim", storage_root=str(root),
                        milvus={"uri": str(root / "sim.db")},
                        model={"path": str(model), "cache_dir": str(model_cache)},
                        codec=codec, chunk={"max_tokens": 250}, dask={"address": dask_address})
    summary = vecpress.ingest(str(corpus), settings)
    assert summary.rows_in_milvus == len(texts) and not summary.errors

    reference = SentenceTransformer(str(model), device="cpu")
    queries = texts[5:300:37]
    with vecpress.open_collection("sim", storage_root=str(root)) as kb:
        info = kb.info()
        assert info.similarity == similarity
        assert info.index["metric_type"] == ("IP" if similarity == "dot" else "L2")
        assert (info.codec.get("kind") == "exact") == (similarity == "euclidean")
        # The embeddings are the model's own, lengths included (nothing normalises them).
        np.testing.assert_allclose(kb.embed(queries), reference.encode(queries), atol=2e-4)
        found = kb.search(queries, k=10)
    true = reference.similarity(reference.encode(queries), reference.encode(texts)).numpy()
    spread = float(true.max() - true.min())
    for row, hits in zip(true, found, strict=True):
        best = np.sort(row)[::-1][:10]
        ours = np.array([h.score for h in hits])
        # Each hit's score is the model's similarity of that passage, within what the rescoring
        # codes keep (SQ8: one 256th of each PCA component's range; seen: 0.0025 of the spread;
        # the exact codec's FP16: far less) ...
        theirs = np.array([row[texts.index(h.text)] for h in hits])
        np.testing.assert_allclose(ours, theirs, atol=4e-3 * spread)
        # ... and the hits are the exact top 10 by that similarity, best first.
        np.testing.assert_allclose(ours, best, atol=4e-3 * spread)
