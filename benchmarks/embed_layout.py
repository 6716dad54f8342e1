"""One process with 2 ONNX Runtime threads against 2 processes with one thread each (MiniLM int8).

Why: a local cluster runs one single-threaded Dask worker per core, each with its own ONNX
session; ``pipeline.py ratio`` compares a whole ingest against one process embedding with all the
cores. This measures what the layout alone costs: the same passages (the pipeline corpus's first
``--passages``), split in halves over two spawned processes of one intra-op thread each, against
one process of two threads, alternating, ``--repeats`` times. Results:
benchmarks/results/embed_layout_cpu.json (passages/s of each layout and their ratio).

    .venv/bin/python benchmarks/embed_layout.py [--passages 4000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

import harness
from pipeline import corpus


def _texts(count: int) -> list[str]:
    out: list[str] = []
    for path in sorted(corpus(100_000).glob("*.jsonl")):
        for line in path.open():
            out.append(json.loads(line)["text"])
            if len(out) == count:
                return out
    return out


def _embed(texts: list[str], threads: int, seconds: mp.Queue, ready: mp.Barrier) -> None:
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    env = harness.model_env("minilm", "int8")
    embedder = OnnxEmbedder(harness.export_env_model(env), ModelSettings(variant="int8"),
                            threads=threads)
    embedder.encode(texts[:128])  # warm
    ready.wait()
    started = time.perf_counter()
    embedder.encode(texts)
    seconds.put(time.perf_counter() - started)


def _rate(texts: list[str], layout: tuple[int, ...]) -> float:
    seconds: mp.Queue = mp.Queue()
    ready = mp.Barrier(len(layout))
    parts = [texts[i::len(layout)] for i in range(len(layout))]
    procs = [mp.Process(target=_embed, args=(part, threads, seconds, ready))
             for part, threads in zip(parts, layout, strict=True)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return len(texts) / max(seconds.get() for _ in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    mp.set_start_method("spawn")
    texts = _texts(args.passages)
    runs: dict[str, list[float]] = {"1 process x 2 threads": [], "2 processes x 1 thread": []}
    for _ in range(args.repeats):
        runs["1 process x 2 threads"].append(_rate(texts, (2,)))
        runs["2 processes x 1 thread"].append(_rate(texts, (1, 1)))
    medians = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    for name, rate in medians.items():
        print(f"{name:24} {rate:8.1f} passages/s   runs {[round(r, 1) for r in runs[name]]}")
    ratio = round(medians["2 processes x 1 thread"] / medians["1 process x 2 threads"], 3)
    print(f"2 processes ÷ 1 process: {ratio}")
    harness.write_results(harness.RESULTS / "embed_layout_cpu.json", {
        "what": __doc__.split("\n")[0], "machine": harness.machine("onnxruntime", git=True),
        "model": "MiniLM-L6 int8", "passages": len(texts),
        "runs_per_s": {k: [round(r, 1) for r in v] for k, v in runs.items()},
        "median_per_s": medians, "two_processes_over_one": ratio})


if __name__ == "__main__":
    main()
