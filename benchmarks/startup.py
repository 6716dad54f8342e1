"""Start-up benchmark: wall time of whole `vecpress embed` / `vecpress search` commands on a few
texts with a warm model cache, beside the interpreter's own floors measured in the same run.

    .venv/bin/python benchmarks/startup.py [--repeats 5] [--collection kb --storage-root DIR]

Floors: `python -c pass` (the interpreter) and `python -c "import pymilvus"` (the Milvus client
imports pandas and, at the first search, scipy: every search command pays for it). Writes
benchmarks/results/startup_cpu_<cores>core.json.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import corpora
from harness import RESULTS, Stopwatch, device_label, machine, write_results

TEXTS = ["how do I read a file line by line", "sort a list of dictionaries by a key",
         "open a network connection with a timeout", "parse a date from a string",
         "the quick brown fox jumps over the lazy dog", "compress a directory into an archive",
         "retry a failed request with backoff", "format a number with thousands separators"]


def timed(cmd: list[str], repeats: int) -> dict:
    times = []
    for _ in range(repeats):
        clock = Stopwatch()
        done = subprocess.run(cmd, capture_output=True, text=True)
        times.append(clock.seconds)
        if done.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return {"command": " ".join(cmd), "median_s": statistics.median(times), "min_s": min(times),
            "runs": times}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--collection")
    parser.add_argument("--storage-root", default="./data")
    args = parser.parse_args()
    exe = str(Path(sys.executable).with_name("vecpress"))
    work = Path(tempfile.mkdtemp(prefix="startup-"))
    texts = corpora.write_jsonl(work / "few.jsonl", ({"id": str(i), "text": t} for i, t in enumerate(TEXTS)))
    # one untimed run: exports the model into the cache if it is not there yet
    subprocess.run([exe, "embed", str(texts), "--out", str(work / "v.npy")], check=True,
                   capture_output=True)
    rows = {"python -c pass": timed([sys.executable, "-c", "pass"], args.repeats),
            "import pymilvus (+ scipy.sparse)": timed(
                [sys.executable, "-c", "import pymilvus, scipy.sparse"], args.repeats),
            "vecpress embed (8 texts)": timed(
                [exe, "embed", str(texts), "--out", str(work / "v.npy")], args.repeats)}
    if args.collection:
        rows["vecpress search (1 query)"] = timed(
            [exe, "search", TEXTS[0], "--collection", args.collection, "--storage-root",
             args.storage_root, "-k", "3"], args.repeats)
    print(f"{'command':<36} {'median s':>9} {'min s':>7}")
    for name, row in rows.items():
        print(f"{name:<36} {row['median_s']:>9.2f} {row['min_s']:>7.2f}")
    write_results(RESULTS / f"startup_{device_label('cpu')}.json",
                  {"machine": machine(cpus_key="cores"), "repeats": args.repeats, "rows": rows})


if __name__ == "__main__":
    main()
