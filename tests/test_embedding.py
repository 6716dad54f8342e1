"""ONNX export and inference against the sentence-transformers reference (real model, real text);
the embedder's own machinery (batching, windows, sessions, tokeniser processes) on the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import ExportError, artifact_key, cached_artifact, export_model
from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir
from vecpress.tasks.worker_cache import cached


def test_fp32_matches_sentence_transformers(fp32_artifact, paragraphs) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [t for _, t in paragraphs[100:228]]
    reference = SentenceTransformer(fp32_artifact.model_dir, device="cpu").encode(texts)
    ours = OnnxEmbedder(fp32_artifact).encode(texts)
    cosines = np.sum(reference * ours, axis=1) / (
        np.linalg.norm(reference, axis=1) * np.linalg.norm(ours, axis=1))
    assert cosines.min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert fp32_artifact.min_cosine >= 0.999  # the gate recorded at export


def test_token_budget_changes_batching_not_results(tiny_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[:200]]
    small = OnnxEmbedder(tiny_artifact, ModelSettings(max_batch_tokens=128)).encode(texts)
    large = OnnxEmbedder(tiny_artifact, ModelSettings(max_batch_tokens=16384)).encode(texts)
    np.testing.assert_allclose(small, large, atol=2e-5)


def test_max_padding_bounds_each_batch_not_results(tiny_artifact, paragraphs) -> None:
    """Batches end where their rows' length changes (``max_padding`` 0, the default) once they
    hold an eighth of the budget: less padding computed, the same vectors."""
    texts = [t for _, t in paragraphs[:600]]
    shapes: dict[float | None, list[np.ndarray]] = {}
    vectors = {}
    for padding in (None, 0.0):
        embedder = OnnxEmbedder(tiny_artifact, ModelSettings(max_padding=padding))
        run, seen = embedder._run, shapes.setdefault(padding, [])
        embedder._run = lambda feeds, run=run, seen=seen: (  # type: ignore[method-assign]
            seen.append(feeds["attention_mask"].sum(axis=1)), run(feeds))[1]
        vectors[padding] = embedder.encode(texts)
    np.testing.assert_allclose(vectors[0.0], vectors[None], atol=2e-5)
    budget = ModelSettings().max_batch_tokens
    assert ModelSettings().max_padding == 0.0
    for lengths in shapes[0.0]:
        assert len(lengths) * lengths.max() <= budget
        if lengths.max() > lengths.min():  # mixed lengths only while the batch was small
            assert (len(lengths) - 1) * np.sort(lengths)[-2] < budget // 8
    padded = {p: sum(len(b) * b.max() for b in batches) / sum(b.sum() for b in batches)
              for p, batches in shapes.items()}
    assert padded[0.0] < padded[None]


def test_tokenising_windows_keep_input_order(tiny_artifact, paragraphs, monkeypatch) -> None:
    """Windows tokenised ahead (here of 37 passages) give the same rows as one window."""
    import vecpress.tasks.embed.embedder as embedding

    texts = [t for _, t in paragraphs[:200]] + ["word " * 600]
    single = OnnxEmbedder(tiny_artifact)
    whole = single.encode(texts)
    monkeypatch.setattr(embedding, "WINDOW", 37)
    embedder = OnnxEmbedder(tiny_artifact)
    done: list[int] = []
    windowed = embedder.encode(texts, on_progress=done.append)
    np.testing.assert_allclose(windowed, whole, atol=2e-5)
    assert sum(done) == len(texts) and embedder.truncated == single.truncated >= 1


def test_concurrent_sessions_give_the_same_rows(tiny_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[:300]]
    one = OnnxEmbedder(tiny_artifact, ModelSettings(max_batch_tokens=1024)).encode(texts)
    three = OnnxEmbedder(tiny_artifact, ModelSettings(max_batch_tokens=1024, sessions=3))
    assert three._depth == 4 and three._sessions.qsize() == 3
    np.testing.assert_allclose(three.encode(texts), one, atol=2e-5)


def test_tokeniser_processes_give_the_same_embeddings(tiny_artifact, paragraphs) -> None:
    texts = [t for _, t in paragraphs[:300]] + ["word " * 600]
    here = OnnxEmbedder(tiny_artifact)
    pooled = OnnxEmbedder(tiny_artifact, ModelSettings(tokenizer_processes=2))
    try:
        assert pooled._tokenisers is not None and pooled._tokenisers.processes == 2
        np.testing.assert_allclose(pooled.encode(texts), here.encode(texts), atol=2e-5)
        assert pooled.truncated == here.truncated >= 1
    finally:
        pooled.close()  # its two tokeniser processes (the session's leftover check found them)


_POOL_THEN_SLEEP = """
import sys, time
from vecpress.tasks.embed.tokenising import TokeniserPool
pool = TokeniserPool(sys.argv[1], 128, 2)
pool.tokenise(["start both tokenisers"] * 4)
print(" ".join(str(pid) for pid in pool._pool._processes), flush=True)
time.sleep(600)
"""


def test_tokeniser_processes_end_when_the_process_that_started_them_is_killed(fp32_artifact
                                                                            ) -> None:
    """A Dask worker terminated by its nanny cannot shut its pool down: the pool's processes must
    not run on as orphans (the session's leftover check found two after a work-pool run)."""
    import psutil

    parent = subprocess.Popen([sys.executable, "-c", _POOL_THEN_SLEEP, fp32_artifact.model_dir],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pool = [psutil.Process(int(pid)) for pid in parent.stdout.readline().split()]
        assert len(pool) == 2 and all(p.ppid() == parent.pid for p in pool)
    finally:
        parent.kill()
        parent.wait()
    _, alive = psutil.wait_procs(pool, timeout=15)
    assert not alive, f"tokeniser processes outlived their parent: {alive}"


@pytest.mark.slow  # a local Dask cluster
def test_local_dask_workers_may_start_tokeniser_processes(tiny_artifact, paragraphs, tmp_path) -> None:
    """dask_client's workers are not daemonic, so an embedder there gets its tokeniser pool. Its
    dashboard takes a free port on this host: a run beside another (holding Dask's default
    :8787) starts without a warning in the user's terminal."""
    import socket
    import warnings

    import pyarrow as pa

    from vecpress.infra import storage
    from vecpress.infra.cluster import dask_client
    from vecpress.infra.settings import DaskSettings
    from vecpress.tasks.arrays import read_embeddings
    from vecpress.tasks.embed.tokenising import can_spawn_processes
    from vecpress.tasks.ingest.shard_jobs import embed_shard

    texts = [t for _, t in paragraphs[:64]]
    shard = str(tmp_path / "passages.parquet")
    storage.write_parquet(shard, pa.table({"pk": list(range(64)), "doc_id": ["d"] * 64,
                                           "chunk": list(range(64)), "text": texts}))
    with socket.socket() as other, warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        try:
            other.bind(("", 8787))
            other.listen()
        except OSError:  # already held, by another run: the same situation
            pass
        with dask_client(DaskSettings(n_workers=1, threads_per_worker=1)) as (client, info):
            assert all(client.run(can_spawn_processes).values())
            done = client.submit(embed_shard, shard, str(tmp_path / "e.parquet"), tiny_artifact,
                                 ModelSettings(tokenizer_processes=2), 1).result()
            pools = client.run(lambda: [o._tokenisers is not None for o in cached("embedder")])
    assert not [w for w in warned if "already in use" in str(w.message)]
    assert info.dashboard == "" or info.dashboard.startswith("http://127.0.0.1:")
    assert done.rows == 64 and list(pools.values()) == [[True]]
    _, vectors = read_embeddings(done.url)
    np.testing.assert_allclose(vectors, OnnxEmbedder(tiny_artifact).encode(texts), atol=2e-5)


def test_overlong_passages_are_counted(fp32_artifact) -> None:
    embedder = OnnxEmbedder(fp32_artifact)
    embedder.encode(["word " * 600, "short"])
    assert embedder.truncated == 1


def test_second_export_is_a_cache_hit(fp32_artifact, model_cache: Path, paragraphs) -> None:
    onnx_file = Path(fp32_artifact.onnx_path)
    before = os.stat(onnx_file).st_mtime_ns
    again = export_model(read_model_spec(resolve_model_dir(None)), "fp32", model_cache,
                         lambda: [t for _, t in paragraphs[:64]])
    assert again == fp32_artifact
    assert os.stat(onnx_file).st_mtime_ns == before


def test_unknown_variant_is_refused(model_cache: Path) -> None:
    with pytest.raises(ExportError, match="use fp32, fp16 or int8"):
        export_model(read_model_spec(resolve_model_dir(None)), "bf16", model_cache, lambda: ["x"])


def test_a_cache_hit_reads_file_stats_not_weights(tmp_path: Path, paragraphs, tiny_model) -> None:
    """The cache index is keyed by each model file's path, size and mtime: a hit never reads
    the weights (start-up), and any rewrite that changes an mtime is checked by content."""
    import shutil

    # A copy with the same files, sizes and mtimes: this test rewrites its weights.
    model_dir = Path(shutil.copytree(tiny_model, tmp_path / "tiny"))
    cache = tmp_path / "cache"
    probes = [t for _, t in paragraphs[:16]]
    first = export_model(read_model_spec(model_dir), "fp32", cache, lambda: probes)

    def no_export() -> list[str]:
        raise AssertionError("exported again")

    weights = next(model_dir.rglob("model.safetensors"))
    # Touched but unchanged (a copy, a checkout): the content hash finds the same artifact.
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert export_model(read_model_spec(model_dir), "fp32", cache, no_export) == first
    stat = weights.stat()
    # Same size and mtime, other bytes: only a content hash would notice; a hit does not hash.
    weights.write_bytes(bytes(stat.st_size))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert export_model(read_model_spec(model_dir), "fp32", cache, no_export) == first
    # A new mtime misses the index: the content hash decides, and these bytes are another model
    # (an export would start; its weights are zeros here).
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    spec = read_model_spec(model_dir)
    assert cached_artifact(spec, "fp32", cache) is None
    assert not first.name.endswith(artifact_key(spec, "fp32"))


def test_the_fidelity_gate_also_probes_the_users_own_text(tmp_path: Path, paragraphs,
                                                          tiny_model) -> None:
    from vecpress.infra.settings import InputSettings
    from vecpress.tasks.inputs.sources import sample_texts

    for n in range(3):
        (tmp_path / f"f{n}.jsonl").write_text("".join(
            f'{{"id": "{n}-{i}", "text": "file {n} record {i} {"word " * 200}"}}\n'
            for i in range(50)))
    own = sample_texts([str(tmp_path / "f*.jsonl")], InputSettings(), count=12)
    # a few records of every file in turn, each cut to 120 words
    assert [t.split()[:4] for t in own[:3]] == [["file", str(n), "record", "0"] for n in range(3)]
    assert len(own) == 12 and max(len(t.split()) for t in own) == 120
    model_dir = Path(tiny_model)
    builtin = [t for _, t in paragraphs[:16]]
    with pytest.raises(ExportError, match=r"on 28 probe passages \(12 from your inputs\)"):
        export_model(read_model_spec(model_dir), "fp32", tmp_path / "c1", lambda: builtin,
                     min_cosine=1.5, own_probes=lambda: own)
    artifact = export_model(read_model_spec(model_dir), "fp32", tmp_path / "c2", lambda: builtin,
                            own_probes=lambda: own)
    assert (artifact.probes, artifact.own_probes) == (28, 12) and artifact.min_cosine > 0.999


def test_int8_keeps_the_first_half_of_the_ffn_outputs_in_fp32(tmp_path: Path, paragraphs,
                                                              tiny_model, caplog) -> None:
    """The int8 recipe: MatMul/Attention weights int8 per channel, except the feed-forward output
    MatMuls (fed by the GELU) of the first half of the layers, which the gate then checks. The
    quantiser's advice to pre-process (meant for image models) is not printed."""
    import logging

    import onnx

    caplog.set_level(logging.WARNING)
    from vecpress.tasks.embed.graph_variants import ffn_output_matmuls

    model_dir = Path(tiny_model)
    probes = [t for _, t in paragraphs[:32]]
    fp32 = export_model(read_model_spec(model_dir), "fp32", tmp_path / "c", lambda: probes)
    int8 = export_model(read_model_spec(model_dir), "int8", tmp_path / "c", lambda: probes)
    fused = onnx.load(fp32.onnx_path)
    kept = ffn_output_matmuls(fused)
    assert len(kept) == 1  # one layer: its FFN output is the first half
    graph = onnx.load(int8.onnx_path).graph
    ops = {n.name: n.op_type for n in graph.node}
    assert ops[kept[0]] == "MatMul"  # still fp32
    assert sum(op in ("MatMulInteger", "DynamicQuantizeMatMul") for op in ops.values()) >= 1
    assert int8.min_cosine >= 0.97 and int8.variant == "int8"
    assert not [r for r in caplog.records if "pre-processing" in r.getMessage()]
    assert not any(type(h) is logging.StreamHandler for h in logging.getLogger().handlers)
