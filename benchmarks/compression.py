"""Compression benchmark: bytes per vector and recall of the codec + Milvus layer on >= 50k passages.

Real passages: docstring paragraphs of the standard library and the installed site-packages
(`tasks.corpus.docstring_paragraphs`, deterministic order), embedded once with the packaged MiniLM
ONNX export and cached under data/bench/ (git-ignored). Held-out paragraphs are the queries; exact
FP32 inner-product top-10 over the corpus embeddings is the truth.

    .venv/bin/python benchmarks/compression.py [--passages 50000] [--variant int8] [--embed-only]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

BENCH_DIR = Path("data/bench")
RESULTS = Path(__file__).parent / "results"
CHECKPOINT = 5000


def embedded_corpus(total: int, variant: str, threads: int) -> tuple[list[str], list[str], np.ndarray,
                                                                      dict]:
    """(ids, texts, float32 embeddings, engine facts) of the first ``total`` paragraphs, cached."""
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.corpus import docstring_paragraphs
    from vecpress.tasks.embedding import OnnxEmbedder
    from vecpress.tasks.onnx_export import export_for_settings

    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    items = list(itertools.islice(docstring_paragraphs(), total))
    if len(items) < total:
        raise SystemExit(f"only {len(items)} docstring paragraphs installed; ask for fewer passages")
    ids, texts = [i for i, _ in items], [t for _, t in items]
    stem = BENCH_DIR / f"docstrings-{variant}-{total}"
    facts_path = stem.with_suffix(".json")
    artifact = export_for_settings(ModelSettings(variant=variant), Path("data/models"))
    facts = {"model": Path(artifact.model_dir).name, "variant": artifact.variant,
             "onnx": Path(artifact.onnx_path).parent.name, "passages": total}
    vec_path = stem.with_suffix(".npy")
    if vec_path.exists() and facts_path.exists():
        return ids, texts, np.load(vec_path), json.loads(facts_path.read_text())
    embedder = OnnxEmbedder(artifact, threads=threads)
    parts = []
    started = time.perf_counter()
    for start in range(0, total, CHECKPOINT):
        part = BENCH_DIR / f"{stem.name}.part{start // CHECKPOINT:03d}.npy"
        if not part.exists():
            np.save(part, embedder.encode(texts[start : start + CHECKPOINT]))
            print(f"embedded {min(start + CHECKPOINT, total):,}/{total:,} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
        parts.append(np.load(part))
    vectors = np.concatenate(parts)
    np.save(vec_path, vectors)
    facts |= {"embed_seconds_this_process": time.perf_counter() - started,
              "truncated_to_window": embedder.truncated}
    facts_path.write_text(json.dumps(facts, indent=2))
    for start in range(0, total, CHECKPOINT):
        (BENCH_DIR / f"{stem.name}.part{start // CHECKPOINT:03d}.npy").unlink(missing_ok=True)
    return ids, texts, vectors, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=50_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--variant", default="int8")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--embed-only", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _ids, _texts, _vectors, facts = embedded_corpus(args.passages + args.queries, args.variant,
                                                    args.threads)
    if args.embed_only:
        print(facts)
        return


if __name__ == "__main__":
    main()
