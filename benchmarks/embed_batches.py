"""How a worker's batches are cut: model.max_padding and model.max_batch_tokens (MiniLM int8).

Why: one Dask worker embeds one pipeline part (model.passages_per_shard passages) at a time with
one ONNX Runtime thread, its batches cut from that part's passages sorted by length. A batch pays
for its padding as for text, and a large one leaves the cache. This embeds the same passages (the
pipeline corpus's first ``--passages``) part by part in one process of one thread, for each
setting, alternating, ``--repeats`` times, and counts the padding each cut computes.
Results: benchmarks/results/embed_batches_cpu_minilm_int8.json.

    .venv/bin/python benchmarks/embed_batches.py [--passages 4096] [--repeats 2] [--corpus NAME]

``--corpus`` other than the pipeline's docstrings (``corpora.CORPORA``: fortunes, descriptions...)
writes embed_batches_cpu_minilm_int8_<name>.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import corpora
import harness
import numpy as np
from embed_layout import _texts

CUTS: dict[str, dict] = {
    "max_padding None, 8192 tokens (before)": {"max_padding": None},
    "max_padding 0.05, 8192 tokens": {"max_padding": 0.05},
    "max_padding 0.0, 8192 tokens (default)": {"max_padding": 0.0},
    "max_padding None, 2048 tokens": {"max_padding": None, "max_batch_tokens": 2048},
    "max_padding 0.0, 4096 tokens": {"max_padding": 0.0, "max_batch_tokens": 4096},
}


def main() -> None:
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=4096)
    parser.add_argument("--part", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--corpus", default="docstrings", choices=sorted(corpora.CORPORA))
    args = parser.parse_args()
    texts = _texts(args.passages) if args.corpus == "docstrings" else \
        [text for _, text in corpora.load(args.corpus, args.passages)]
    artifact = harness.export_env_model(harness.model_env("minilm", "int8"))
    runs: dict[str, list[float]] = {name: [] for name in CUTS}
    padding: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, cut in CUTS.items():
            embedder = OnnxEmbedder(artifact, ModelSettings(variant="int8", **cut), threads=1)
            embedder.encode(texts[:128])  # warm
            run, seen = embedder._run, []
            embedder._run = lambda feeds, run=run, seen=seen: (  # type: ignore[method-assign]
                seen.append(feeds["attention_mask"].sum(axis=1)), run(feeds))[1]
            started = time.perf_counter()
            for start in range(0, len(texts), args.part):
                embedder.encode(texts[start:start + args.part])
            runs[name].append(len(texts) / (time.perf_counter() - started))
            padding[name] = float(sum(len(b) * b.max() for b in seen) /
                                  sum(int(b.sum()) for b in seen) - 1)
            embedder.close()
    medians = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    base = medians[next(iter(CUTS))]
    print(f"{'cut':42} {'passages/s':>10} {'÷ before':>8} {'padding':>8}")
    for name, rate in medians.items():
        print(f"{name:42} {rate:10.1f} {rate / base:8.3f} {padding[name]:8.1%}")
    suffix = "" if args.corpus == "docstrings" else f"_{args.corpus}"
    harness.write_results(harness.RESULTS / f"embed_batches_cpu_minilm_int8{suffix}.json", {
        "what": __doc__.split("\n")[0], "machine": harness.machine("onnxruntime", git=True),
        "model": "MiniLM-L6 int8", "corpus": args.corpus, "passages": len(texts),
        "part": args.part, "threads": 1,
        "runs_per_s": {k: [round(r, 1) for r in v] for k, v in runs.items()},
        "median_per_s": medians, "over_before": {k: round(v / base, 3) for k, v in medians.items()},
        "padding_share": {k: round(v, 4) for k, v in padding.items()},
        "text_chars_mean": round(float(np.mean([len(t) for t in texts])), 1)})


if __name__ == "__main__":
    main()
