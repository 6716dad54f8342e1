"""Where a whole `vecpress ingest` command spends its CPU: py-spy over every process it starts.

``profile_stages.py`` profiles the stage functions in one process; this profiles the command as a
user runs it (the flow process, each Dask worker, the temporary Prefect API), sampled by
``py-spy record --subprocesses`` at 50 Hz. A sample whose innermost frame waits (select, a lock, a
condition, a queue, sleep) counts as idle. For each kind of process: busy and idle seconds, and
the functions with the most busy samples of their own, in seconds and in µs per passage; plus a
few named groups (ONNX Runtime, Milvus upsert on the client and in Lite, codec training, Parquet
writes, catalog merges). ONNX Runtime's own threads are not Python: a worker's ``Session.run``
samples are the wall time of the call.

    .venv/bin/python benchmarks/profile_ingest.py [--passages 300000] [--model tiny|nano]
    .venv/bin/python benchmarks/profile_ingest.py --raw FILE --label before   # aggregate only

Needs ``py-spy`` on the path. Results: benchmarks/results/profile_ingest_<N>[_<label>].json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness
from scale_corpus import corpus

RATE = 50
WORK = harness.BENCH_DIR / "profile_ingest"
IDLE = ("select (", "Condition.wait", "_worker (concurrent", "wait (threading", "poll (", "sleep",
        "accept (", "heartbeat_loop", "_recv_into", "run_forever", "_run_once", "get (queue",
        "acquire (")
# Groups of busy time: a sample counts for a group when any of its frames contains the text.
GROUPS = {
    "ONNX Runtime Session.run": "Session.run (onnxruntime",
    "Milvus upsert: pymilvus request": "upsert_request (pymilvus",
    "Milvus upsert: Lite engine (over gRPC)": "MilvusServicer.Upsert",
    "Milvus upsert: Lite engine (in process)": "MilvusStore.upsert",
    "Milvus Lite flush (memtable to Parquet)": "execute_flush (milvus_lite",
    "codec fit (faiss train)": ".train (faiss",
    "Parquet writes": "ParquetWriter.write_table",
    "catalog (delta-rs merges)": "TableMerger.execute",
    "chunking (tokenizer and packing)": "Chunker.passages_many",
    "reading inputs": "_read_jsonl",
}


def kind_of(command: str) -> str:
    if "uvicorn" in command and "prefect" in command:
        return "prefect api"
    if "spawn_main" in command:
        return "dask worker"
    if "vecpress" in command:
        return "flow (vecpress command)"
    return "other"


def aggregate(raw: Path, passages: int, top: int) -> dict:
    """Per kind of process: busy/idle seconds, top own-time functions, named groups."""
    busy: collections.Counter[str] = collections.Counter()
    idle: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    pids: dict[str, set[str]] = collections.defaultdict(set)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        at = max(i for i, f in enumerate(frames) if f.startswith("process "))
        kind = kind_of(frames[at])
        pids[kind].add(frames[at].split(":")[0])
        samples = int(count)
        if any(word in frames[-1] for word in IDLE):
            idle[kind] += samples
            continue
        busy[kind] += samples
        name, _, where = frames[-1].rpartition(" (")
        own[kind][f"{name} ({where.rsplit('/', 1)[-1]}"] += samples
        for name, text in GROUPS.items():
            if any(text in f for f in frames[at + 1:]):
                groups[kind][name] += samples

    def us(samples: int) -> float:
        return round(1e6 * samples / RATE / passages, 1)

    out = {}
    for kind in sorted(busy, key=lambda k: -busy[k]):
        out[kind] = {
            "processes": len(pids[kind]), "busy_s": round(busy[kind] / RATE, 1),
            "idle_s": round(idle[kind] / RATE, 1), "busy_us_per_passage": us(busy[kind]),
            "groups": {name: {"s": round(n / RATE, 1), "us_per_passage": us(n)}
                       for name, n in groups[kind].most_common()},
            "top_own": [{"function": f, "s": round(n / RATE, 1), "us_per_passage": us(n)}
                        for f, n in own[kind].most_common(top)],
        }
    return out


def record(passages: int, model: str, variant: str = "fp32") -> tuple[Path, dict, float]:
    """Run one ingest of ``passages`` real passages under py-spy; (raw profile, summary, wall s)."""
    if not shutil.which("py-spy"):
        sys.exit("py-spy is not on the path: pip install py-spy")
    folder, _ = corpus(passages, passages)
    run = WORK / f"{model}-{variant}-{passages}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    env = os.environ | harness.model_env(model, variant)
    env.pop("PREFECT_API_URL", None)
    harness.export_env_model(env)
    # The command would start the local Prefect server, which outlives it: py-spy would follow
    # that child and record until its idle stop. Started first, it is no child of the command.
    subprocess.run([sys.executable, "-m", "vecpress", "server", "start"], env=env, check=True,
                   capture_output=True)
    raw = run / "raw.txt"
    command = ["py-spy", "record", "--subprocesses", "--format", "raw", "--rate", str(RATE),
               "-o", str(raw), "--", sys.executable, "-m", "vecpress", "ingest", str(folder),
               "--collection", "profile", "--storage-root", str(run / "storage"),
               "--milvus-uri", str(run / "milvus.db"), "--json"]
    clock = harness.Stopwatch()
    done = subprocess.run(command, env=env, cwd=run, capture_output=True, text=True, check=True)
    wall = clock.seconds
    # py-spy prints its own lines after the command's summary.
    summary, _ = json.JSONDecoder().raw_decode(done.stdout[done.stdout.index("{\n"):])
    return raw, summary, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passages", type=int, default=300_000)
    parser.add_argument("--model", choices=["tiny", "nano", "minilm"], default="tiny",
                        help="minilm: the packaged model (with --variant int8: a CPU run's)")
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--raw", type=Path, help="aggregate this py-spy raw file instead of running")
    parser.add_argument("--rows", type=int, help="with --raw: the passages that run ingested")
    parser.add_argument("--label", default="")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    result: dict = {"machine": harness.machine("onnxruntime", "pymilvus", git=True),
                    "model": args.model, "variant": args.variant, "sample_rate_hz": RATE}
    if args.raw:
        raw, passages = args.raw, args.rows or args.passages
    else:
        raw, summary, wall = record(args.passages, args.model, args.variant)
        passages = summary["passages"]
        result |= {"wall_s": round(wall, 1), "end_to_end_per_s": round(passages / wall)}
    result |= {"passages": passages, "processes": aggregate(raw, passages, args.top)}
    for kind, stats in result["processes"].items():
        print(f"\n{kind} (×{stats['processes']}): busy {stats['busy_s']} s "
              f"({stats['busy_us_per_passage']} µs/passage), idle {stats['idle_s']} s")
        for name, group in stats["groups"].items():
            print(f"  {group['s']:7.1f} s {group['us_per_passage']:7.1f} µs/p  [{name}]")
        for row in stats["top_own"][:8]:
            print(f"  {row['s']:7.1f} s {row['us_per_passage']:7.1f} µs/p  {row['function']}")
    suffix = f"_{args.label}" if args.label else ""
    harness.write_results(harness.RESULTS / f"profile_ingest_{args.passages}{suffix}.json", result)


if __name__ == "__main__":
    main()
