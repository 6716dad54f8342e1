"""Out-of-memory halving against a real memory cap: ONNX Runtime's CPU arena limited by OrtArenaCfg."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.model_files import load_tokenizer
from vecpress.tasks.embed.oom import OutOfMemoryFloorError, TokenBudget, is_out_of_memory

# MiniLM's weights take ~86 MiB of this; a ~16k-token batch needs ~67 MiB more for one attention
# buffer, so big batches really fail to allocate while batches of ≤2k tokens fit.
ARENA_MB = 192


@pytest.fixture(scope="module")
def texts(paragraphs) -> list[str]:
    return [t for _, t in paragraphs[:160]]


@pytest.fixture(scope="module")
def uncapped(fp32_artifact, texts) -> np.ndarray:
    """The texts' embeddings without a cap: what every capped run must match."""
    return OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=16384)).encode(texts)


@pytest.mark.parametrize("sessions", [1, 2])
def test_capped_arena_halves_and_matches_uncapped(fp32_artifact, texts, uncapped, caplog,
                                                  sessions) -> None:
    """With two sessions, batches run concurrently from one capped arena; a failed batch's
    successors in flight are redone after the halving."""
    reference = uncapped
    # Batches fill the budget (max_padding None), so the first ones need more than the cap.
    capped = OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=16384, min_batch_tokens=256,
                                                       arena_max_mb=ARENA_MB, sessions=sessions,
                                                       max_padding=None))
    done: list[int] = []
    with caplog.at_level(logging.WARNING, logger="vecpress.tasks.embed.embedder"):
        ours = capped.encode(texts, on_progress=done.append)
    assert capped.budget.halvings >= 1  # the cap really made allocations fail
    assert capped.max_batch_tokens < 16384  # the worker keeps the reduced budget
    assert any("token budget halved" in r.getMessage() for r in caplog.records)
    assert sum(done) == len(texts)  # every passage reported once, none twice after retries
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    budget = capped.max_batch_tokens
    capped.encode(texts[:40])  # next shard starts at the reduced budget: no new halving
    assert capped.max_batch_tokens == budget


def test_floor_error_names_passages_and_lengths(fp32_artifact, texts) -> None:
    ids = [f"doc-{i}#0" for i in range(len(texts))]
    embedder = OnnxEmbedder(fp32_artifact, ModelSettings(max_batch_tokens=16384, min_batch_tokens=8192,
                                                        arena_max_mb=ARENA_MB, max_padding=None))
    with pytest.raises(OutOfMemoryFloorError, match=r"model\.min_batch_tokens=8192") as info:
        embedder.encode(texts, ids=ids)
    named = re.findall(r"(doc-\d+#0) \((\d+) tokens\)", str(info.value))
    assert len(named) == 10 and "more" in str(info.value)
    tok = load_tokenizer(Path(fp32_artifact.model_dir))
    tok.no_padding()
    for passage_id, length in named:
        text = texts[ids.index(passage_id)]
        assert len(tok.encode(text).ids) == int(length)


def test_cap_below_the_weights_is_refused(fp32_artifact) -> None:
    with pytest.raises(ValueError, match="arena_max_mb=32 is not above the size of the model"):
        OnnxEmbedder(fp32_artifact, ModelSettings(arena_max_mb=32))


def test_budget_grows_back_cautiously() -> None:
    budget = TokenBudget(8192, 512, grow_after=4)
    assert budget.halve() and budget.current == 4096
    for _ in range(4):
        budget.succeeded()
    assert budget.current == 8192  # grown back after a run of successes
    assert budget.halve() and budget.grow_after == 8  # the grown budget failed: wait longer
    for _ in range(7):
        budget.succeeded()
    assert budget.current == 4096
    assert budget.halve() and budget.halve() and budget.current == 1024
    assert budget.halve() and budget.current == 512
    assert not budget.halve() and budget.current == 512  # the floor holds


def test_out_of_memory_recognition() -> None:
    import onnxruntime as ort

    arena = ("Non-zero status code returned while running Attention node. Status Message: "
             "bfc_arena.cc:360 Available memory of 0 is smaller than requested bytes of 100663296")
    assert is_out_of_memory(RuntimeError(arena))
    assert is_out_of_memory(RuntimeError("CUDA failure 2: out of memory ; GPU=0"))
    # creating a CUDA session on a full H100 (onnxruntime-gpu 1.31.1), verbatim:
    assert is_out_of_memory(RuntimeError("CUBLAS failure 3: the resource allocation failed ; GPU=0 ; "
                                         "hostname=vm ; expr=cublasCreate(&cublas_handle_);"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("Invalid rank for input: input_ids Got: 3"))
    with pytest.raises(Exception) as info:  # a real ORT error that is not about memory
        ort.InferenceSession(b"not a model")
    assert not is_out_of_memory(info.value)


def test_settings_refuse_a_floor_above_the_budget() -> None:
    from pydantic import ValidationError

    from vecpress.infra.settings import ModelSettings

    with pytest.raises(ValidationError, match=r"min_batch_tokens \(9000\) must not exceed"):
        ModelSettings(max_batch_tokens=8192, min_batch_tokens=9000)


def test_embed_shard_reports_progress_and_names_passage_ids(fp32_artifact, texts, tmp_path) -> None:
    import pyarrow as pa

    from vecpress.infra import storage
    from vecpress.tasks.arrays import read_embeddings
    from vecpress.tasks.ingest.shard_jobs import embed_shard
    from vecpress.tasks.inputs.records import PASSAGE_SCHEMA

    url = str(tmp_path / "passages.parquet")
    storage.write_parquet(url, pa.table({
        "pk": list(range(len(texts))), "doc_id": [f"file.md#p{i}" for i in range(len(texts))],
        "chunk": [3] * len(texts), "text": texts, "source": ["file.md"] * len(texts)},
        schema=PASSAGE_SCHEMA))
    done: list[int] = []
    shard = embed_shard(url, str(tmp_path / "emb.parquet"), fp32_artifact,
                        ModelSettings(max_batch_tokens=4096), threads=0, on_progress=done.append)
    assert shard.rows == len(texts) == sum(done)
    pks, vectors = read_embeddings(shard.url)
    assert pks.tolist() == list(range(len(texts))) and vectors.shape == (len(texts), 384)
    with pytest.raises(OutOfMemoryFloorError, match=r"file\.md#p\d+#3 \(\d+ tokens\)"):
        embed_shard(url, str(tmp_path / "emb2.parquet"), fp32_artifact,
                    ModelSettings(max_batch_tokens=16384, min_batch_tokens=8192,
                                  arena_max_mb=ARENA_MB, max_padding=None), threads=0)
