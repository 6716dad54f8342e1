"""Codec training time and quality per backend: faiss-cpu vs k-means in torch (CUDA when present).

Real vectors: stdlib docstring passages embedded by the fastest engine here (fp16 on CUDA, else int8
on CPU), repeated with small noise up to --vectors when the corpus is smaller. Each backend fits the
same PCA + PQ on the same sample; prints a table and writes benchmarks/results/codec_train_<dev>.json.

    .venv/bin/python benchmarks/codec_train.py [--vectors 100000] [--pca-dim 256] [--pq-m 32]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import corpora
import numpy as np
from harness import RESULTS, device_label, write_results


def real_vectors(count: int, device: str) -> np.ndarray:
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.export import export_model
    from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir

    passages = list(dict.fromkeys(corpora.chunked_docstrings(min(count, 20_000))))
    variant = "fp16" if device == "cuda" else "int8"
    artifact = export_model(read_model_spec(resolve_model_dir(None)), variant,
                            Path(tempfile.mkdtemp(prefix="codec-bench-")), lambda: passages[:64])
    budget = ModelSettings(max_batch_tokens=65536 if device == "cuda" else 8192)
    vectors = OnnxEmbedder(artifact, budget).encode(passages)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(vectors), size=count)
    noisy = vectors[picks] + rng.normal(0, 0.01, size=(count, vectors.shape[1])).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--pca-dim", type=int, default=256)
    parser.add_argument("--pq-m", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from rich.console import Console
    from rich.table import Table

    from vecpress.infra.settings import CodecSettings
    from vecpress.tasks.codec.codec import fit_codec

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sample = real_vectors(args.vectors, device)
    rows = {}
    for backend in ("faiss", "torch"):
        codec = fit_codec(sample, CodecSettings(pca_dim=args.pca_dim, pq_m=args.pq_m,
                                                sample_size=args.vectors, train_backend=backend))
        rows[codec.report["backend"]] = {k: codec.report[k] for k in (
            "train_seconds", "pq_relative_error", "reconstruction_relative_error")}
    base = rows["faiss-cpu"]["train_seconds"]
    table = Table(title=f"codec training: {args.vectors} vectors, PCA-{args.pca_dim}, PQ{args.pq_m}")
    for col in ("backend", "train s", "× faiss-cpu", "PQ rel. error", "total rel. error"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for name, r in rows.items():
        r["speedup_vs_faiss_cpu"] = base / r["train_seconds"]
        table.add_row(name, f"{r['train_seconds']:.1f}", f"{r['speedup_vs_faiss_cpu']:.2f}",
                      f"{r['pq_relative_error']:.4f}", f"{r['reconstruction_relative_error']:.4f}")
    Console().print(table)
    import faiss

    report = {"device": device, "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
              "cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
              "faiss": faiss.__version__, "vectors": args.vectors, "pca_dim": args.pca_dim,
              "pq_m": args.pq_m, "backends": rows}
    write_results(RESULTS / f"codec_train_{device_label(device)}.json", report)


if __name__ == "__main__":
    main()
