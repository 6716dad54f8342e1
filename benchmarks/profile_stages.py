"""Where a tiny-model ingest spends its CPU, per passage and per stage (issue 24's profile).

The worker-side stage functions run in this one process, on one thread each, under cProfile, over
the same docstring JSONL the pipeline benchmarks ingest (benchmarks/pipeline.py's corpus):

- ``read+chunk``: ``shard_jobs.chunk_files`` (read JSONL, chunk with the model tokenizer, pks,
  Parquet shards, and the token ids as ``--ids`` says);
- ``embed``: each shard read from Parquet and ``shard_jobs.embed_table`` with ``--model``'s random
  BERT (tiny: 1 layer, 64-d; nano: 16-d, embedding at about the tokenizer's cost, as on a GPU box):
  token ids → padded batches → ONNX Runtime → vectors;
- ``floor``: ``tokenizers`` ``encode_batch`` of the passages' texts alone, one call per shard:
  what any pipeline must pay to tokenise.

Printed and written (benchmarks/results/profile_stages_<N>.json, with the .prof files' top
functions): µs per passage of each stage, passages/s, the ratio of end to end (the stages summed)
to the floor, and each stage's top functions by own time.

``--ids``: where the embed stage gets the chunker's token ids: ``sidecar`` (the default: a file
beside the shard, deleted once embedded), ``shard`` (``chunk.keep_token_ids``: in the shard for
good), ``none`` (the text is tokenised again, as CPU runs did before stop 41).

    .venv/bin/python benchmarks/profile_stages.py [--passages 300000] [--top 15]
        [--model tiny|nano] [--ids sidecar|shard|none] [--label NAME]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from pathlib import Path

import harness
import pyarrow.parquet as pq
from pipeline import corpus

WORK = harness.BENCH_DIR / "profile_stages"


def top_functions(profile: cProfile.Profile, count: int, passages: int) -> list[dict]:
    """The ``count`` functions with the most own time: µs per passage, own and cumulative."""
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls": calls,
                     "own_us_per_passage": round(1e6 * own / passages, 2),
                     "cumulative_us_per_passage": round(1e6 * cumulative / passages, 2)})
    return sorted(rows, key=lambda r: -r["own_us_per_passage"])[:count]


def profiled(label: str, fn, passages_of, top: int) -> tuple[object, dict]:
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    out = fn()
    profile.disable()
    seconds = time.perf_counter() - started
    passages = passages_of(out)
    profile.dump_stats(str(WORK / f"{label}.prof"))
    return out, {"seconds": round(seconds, 2), "passages": passages,
                 "us_per_passage": round(1e6 * seconds / passages, 1),
                 "passages_per_s": round(passages / seconds),
                 "top": top_functions(profile, top, passages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=300_000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--label", default="", help="suffix of the results file (before/after)")
    parser.add_argument("--model", choices=["tiny", "nano"], default="tiny")
    parser.add_argument("--ids", choices=["sidecar", "shard", "none"], default="sidecar")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)

    from vecpress.infra.settings import Settings
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.model_files import load_tokenizer
    from vecpress.tasks.embed.tokenising import bare_tokenizer
    from vecpress.tasks.ingest.shard_jobs import chunk_files, embed_table
    from vecpress.tasks.inputs.sources import discover
    from vecpress.tasks.inputs.token_sidecar import remove_sidecar, with_sidecar_ids

    env = harness.model_env(args.model, "fp32")
    artifact = harness.export_env_model(env)
    settings = Settings(model={"path": env["VECPRESS_MODEL__PATH"], "variant": "fp32",
                               "tokenizer_processes": 0},
                        chunk={"keep_token_ids": args.ids == "shard"})
    folder = corpus(args.passages)
    files, errors = discover([str(folder)], settings.inputs)
    assert not errors, errors[:3]
    out = WORK / "shards"
    for old in out.glob("*.parquet") if out.exists() else []:
        old.unlink()
    out.mkdir(exist_ok=True)

    chunked, chunk_stats = profiled(
        "chunk", lambda: chunk_files(files, str(out / "part"), settings.inputs, settings.chunk,
                                     artifact.model_dir, 20_000),
        lambda result: result.passages, args.top)
    urls = chunked.urls  # type: ignore[attr-defined]
    if args.ids == "none":
        for url in urls:
            remove_sidecar(url)
    embedder = OnnxEmbedder(artifact, settings.model, threads=1, spin=False)
    _, embed_stats = profiled(
        "embed", lambda: [embed_table(with_sidecar_ids(pq.read_table(url), url), embedder, url)
                          for url in urls],
        lambda vectors: sum(len(v) for v in vectors), args.top)
    tables = [pq.read_table(url, columns=["text"]) for url in urls]
    tok = bare_tokenizer(load_tokenizer(Path(artifact.model_dir)))
    texts = [t.column("text").to_pylist() for t in tables]
    _, floor_stats = profiled(
        "floor", lambda: [tok.encode_batch(t, add_special_tokens=False) for t in texts],
        lambda encoded: sum(len(e) for e in encoded), 5)
    stages = chunk_stats["us_per_passage"] + embed_stats["us_per_passage"]
    result = {
        "machine": harness.machine("onnxruntime", "tokenizers", "pyarrow", git=True),
        "passages": chunk_stats["passages"], "documents": chunked.documents,  # type: ignore[attr-defined]
        "threads": "one per stage (encode_batch: the tokenizer's own pool)",
        "model": args.model, "token_ids": args.ids,
        "stages": {"read+chunk": chunk_stats, f"embed ({args.model} model)": embed_stats,
                   "floor: encode_batch": floor_stats},
        "stages_us_per_passage": round(stages, 1),
        "floor_over_stages": round(floor_stats["us_per_passage"] / stages, 3),
    }
    print(f"{'stage':24} {'µs/passage':>11} {'passages/s':>11}")
    for name, stats in result["stages"].items():
        print(f"{name:24} {stats['us_per_passage']:11.1f} {stats['passages_per_s']:11,}")
    print(f"floor / (read+chunk + embed): {result['floor_over_stages']}")
    for name, stats in result["stages"].items():
        print(f"\n{name}: top functions by own time (µs per passage, own / cumulative)")
        for row in stats["top"][:10]:
            print(f"  {row['own_us_per_passage']:8.2f} {row['cumulative_us_per_passage']:8.2f}  "
                  f"{row['function']}")
    suffix = f"_{args.label}" if args.label else ""
    harness.write_results(harness.RESULTS / f"profile_stages_{args.passages}{suffix}.json", result)


if __name__ == "__main__":
    main()
