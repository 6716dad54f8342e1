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


def _embed(texts: list[str], threads: int, part: int, padding: float | None,
           seconds: mp.Queue, ready: mp.Barrier) -> None:
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    env = harness.model_env("minilm", "int8")
    model = ModelSettings(variant="int8", max_padding=padding)
    embedder = OnnxEmbedder(harness.export_env_model(env), model, threads=threads)
    embedder.encode(texts[:128])  # warm
    ready.wait()
    started = time.perf_counter()
    for start in range(0, len(texts), part or len(texts)):  # as the pipeline's parts, one by one
        embedder.encode(texts[start:start + (part or len(texts))])
    seconds.put(time.perf_counter() - started)


def _rate(texts: list[str], layout: tuple[int, ...], part: int = 0,
          padding: float | None = None) -> float:
    """Passages/s of ``texts`` in contiguous halves (thirds...) over one process per entry of
    ``layout`` (its intra-op threads), each embedding its share ``part`` passages a call (0: one
    call), as a worker embeds one pipeline part after another; ``padding``: model.max_padding."""
    seconds: mp.Queue = mp.Queue()
    ready = mp.Barrier(len(layout))
    size = -(-len(texts) // len(layout))
    shares = [texts[i * size:(i + 1) * size] for i in range(len(layout))]
    procs = [mp.Process(target=_embed, args=(share, threads, part, padding, seconds, ready))
             for share, threads in zip(shares, layout, strict=True)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return len(texts) / max(seconds.get() for _ in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--part", type=int, default=0, help="also run both layouts embedding "
                        "this many passages a call (the pipeline's model.passages_per_shard)")
    parser.add_argument("--max-padding", type=float, nargs="*", default=[],
                        help="also run 2 processes x 1 thread, --part a call, with each of these "
                        "model.max_padding values (the other layouts: None, batches fill the "
                        "token budget)")
    parser.add_argument("--out", default="embed_layout_cpu.json")
    args = parser.parse_args()
    mp.set_start_method("spawn")
    texts = _texts(args.passages)
    layouts: dict[str, tuple[tuple[int, ...], int, float | None]] = {
        "1 process x 2 threads": ((2,), 0, None), "2 processes x 1 thread": ((1, 1), 0, None)}
    if args.part:
        layouts |= {f"1 process x 2 threads, {args.part} a call": ((2,), args.part, None),
                    f"2 processes x 1 thread, {args.part} a call": ((1, 1), args.part, None)}
        layouts |= {f"2 processes x 1 thread, {args.part} a call, max_padding {p}":
                    ((1, 1), args.part, p) for p in args.max_padding}
    runs: dict[str, list[float]] = {name: [] for name in layouts}
    for _ in range(args.repeats):
        for name, (layout, part, padding) in layouts.items():
            runs[name].append(_rate(texts, layout, part, padding))
    medians = {k: round(statistics.median(v), 1) for k, v in runs.items()}
    for name, rate in medians.items():
        print(f"{name:52} {rate:8.1f} passages/s   runs {[round(r, 1) for r in runs[name]]}")
    ratio = round(medians["2 processes x 1 thread"] / medians["1 process x 2 threads"], 3)
    print(f"2 processes ÷ 1 process: {ratio}")
    harness.write_results(harness.RESULTS / args.out, {
        "what": __doc__.split("\n")[0], "machine": harness.machine("onnxruntime", git=True),
        "model": "MiniLM-L6 int8", "passages": len(texts), "part": args.part,
        "runs_per_s": {k: [round(r, 1) for r in v] for k, v in runs.items()},
        "median_per_s": medians, "two_processes_over_one": ratio})


if __name__ == "__main__":
    main()
