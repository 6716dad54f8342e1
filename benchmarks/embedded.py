"""Real passages embedded once with the packaged MiniLM ONNX export, and the exact search they are
measured against: what compression.py and search_latency.py share.

Embeddings are cached as data/bench/<corpus>-<variant>-<n>.npy with a .json of facts beside
(index_plan.py reads them by that name), checkpointed every CHECKPOINT passages while they are
made, so that an interrupted embedding resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

import corpora
import faiss
import numpy as np
from harness import BENCH_DIR, MODEL_CACHE, Stopwatch

CHECKPOINT = 5000
K = 10  # recall@K and latency at top-K


def embedded_corpus(total: int, variant: str, threads: int, corpus: str = "docstrings"
                    ) -> tuple[list[str], list[str], np.ndarray, dict]:
    """(ids, texts, float32 embeddings, engine facts) of the first ``total`` texts of ``corpus``
    (benchmarks/corpora.py), cached."""
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.export import export_for_settings

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    items = corpora.load(corpus, total)
    if len(items) < total:
        raise SystemExit(f"only {len(items)} texts in corpus {corpus}; ask for fewer passages")
    ids, texts = [i for i, _ in items], [t for _, t in items]
    stem = BENCH_DIR / f"{corpus}-{variant}-{total}"
    facts_path = stem.with_suffix(".json")
    artifact = export_for_settings(ModelSettings(variant=variant), MODEL_CACHE)
    facts = {"model": Path(artifact.model_dir).name, "variant": artifact.variant,
             "onnx": Path(artifact.onnx_path).parent.name, "passages": total, "corpus": corpus}
    vec_path = stem.with_suffix(".npy")
    if vec_path.exists() and facts_path.exists():
        return ids, texts, np.load(vec_path), json.loads(facts_path.read_text())
    embedder = OnnxEmbedder(artifact, threads=threads)
    parts = []
    clock = Stopwatch()
    for start in range(0, total, CHECKPOINT):
        part = BENCH_DIR / f"{stem.name}.part{start // CHECKPOINT:03d}.npy"
        if not part.exists():
            np.save(part, embedder.encode(texts[start : start + CHECKPOINT]))
            print(f"embedded {min(start + CHECKPOINT, total):,}/{total:,} "
                  f"({clock.seconds:.0f} s)", flush=True)
        parts.append(np.load(part))
    vectors = np.concatenate(parts)
    np.save(vec_path, vectors)
    facts |= {"embed_seconds_this_process": clock.seconds, "truncated_to_window": embedder.truncated}
    facts_path.write_text(json.dumps(facts, indent=2))
    for start in range(0, total, CHECKPOINT):
        (BENCH_DIR / f"{stem.name}.part{start // CHECKPOINT:03d}.npy").unlink(missing_ok=True)
    return ids, texts, vectors, facts


def split(n_total: int, n_queries: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(corpus rows, query rows): held-out passages are the queries."""
    order = np.random.default_rng(seed).permutation(n_total)
    return np.sort(order[n_queries:]), np.sort(order[:n_queries])


def exact_top_k(corpus: np.ndarray, queries: np.ndarray, pks: np.ndarray) -> np.ndarray:
    """The truth: keys of the exact inner-product top-K of each query over the FP32 corpus."""
    exact = faiss.IndexFlatIP(corpus.shape[1])
    exact.add(corpus)
    return pks[exact.search(queries, K)[1]]


def training_sample(corpus: np.ndarray) -> np.ndarray:
    """The codec's training sample: 20,000 vectors (all of a smaller corpus), seeded."""
    rows = np.random.default_rng(1).choice(len(corpus), min(20_000, len(corpus)), replace=False)
    return corpus[rows]
