"""Peak memory of building and updating the rescoring store (``tasks/search/rescore_store.py``).

Why: on a Milvus server, the only memory of a whole `vecpress ingest` that grew with the corpus
was the flow process's at the very end: 410 MB at 100k nano passages, 548 MB at 1M
(``results/scale_nano_server_bulk_100000_1000000_stop54_before.json``), all of it in the check stage, which
builds the store of the new collection. Opened alone on that run's archives the build grew a
process by 122 MB at 1M (13 MB at 100k). This measures it on synthetic archive shards (2,048 rows
of 16-d SQ8 codes each, as ingests write them): a new store of N rows, then an incremental sync
after a run that re-wrote 10% of the rows and added 10% more, each in a fresh process (peak RSS
sampled every 5 ms, less the process's RSS before the build, with its imports done). ``--site``
runs an older checkout (a git worktree) on the same archives, for a before/after table.

    .venv/bin/python benchmarks/rescore_merge_memory.py --rows 100000 1000000 --site /tmp/before
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import harness
import numpy as np

SHARD_ROWS = 2048
WORK = harness.BENCH_DIR / "rescore_merge"

PROBE = """
import json, sys, threading, time
import tempfile
from pathlib import Path
import psutil
from vecpress.tasks.search.rescore_sources import add_shard
from vecpress.tasks.search.rescore_store import RescoreStore
archives, directory = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2]
add_shard(archives[0], Path(tempfile.mkdtemp()))  # its first call's imports (~45 MB) before the baseline
me = psutil.Process()
peak = [0]
def sample():
    while True:
        peak[0] = max(peak[0], me.memory_info().rss)
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
time.sleep(0.05)
base = me.memory_info().rss
started = time.perf_counter()
store = RescoreStore(archives, directory)
seconds = time.perf_counter() - started
time.sleep(0.02)
print(json.dumps({"rows": len(store), "merged_shards": store.merged, "seconds": round(seconds, 2),
                  "peak_growth_mb": round((max(peak[0], me.memory_info().rss) - base) / 2**20, 1)}))
"""


def shards(rows: int, first: int, pks: np.ndarray) -> list[str]:
    """Archive shards of ``pks`` (2,048 rows each), named from shard number ``first``."""
    from vecpress.tasks.codec.refine import train_refiner, write_archive

    rng = np.random.default_rng(first)
    # one build's shards share one codec: the same refiner for every call
    refiner = train_refiner("sq8", np.random.default_rng(0).standard_normal((4096, 16))
                            .astype(np.float32))
    urls = []
    for i, start in enumerate(range(0, rows, SHARD_ROWS)):
        part = pks[start:start + SHARD_ROWS]
        url = str(WORK / "collections" / "c" / "shards" / f"g{first + i:06d}" / "archive-x-0000.arrow")
        write_archive(url, part, rng.standard_normal((len(part), 16)).astype(np.float32), refiner)
        urls.append(url)
    return urls


def probe(archives: list[str], directory: Path, site: str | None) -> dict:
    env = os.environ | ({"PYTHONPATH": site} if site else {})
    listing = WORK / "archives.json"  # a list of 2,441 paths is too long for a command line
    listing.write_text(json.dumps(archives))
    out = subprocess.run([sys.executable, "-c", PROBE, str(listing), str(directory)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"the store's build failed ({site or 'this checkout'}):\n{out.stderr}")
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--site", help="an older checkout's folder: measured first, same archives")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    result: dict = {"what": __doc__.split("\n")[0], "machine": harness.machine(git=True),
                    "site": args.site, "sizes": {}}
    for rows in args.rows:
        shutil.rmtree(WORK, ignore_errors=True)
        rng = np.random.default_rng(rows)
        pks = rng.integers(-(1 << 62), 1 << 62, size=rows)
        first = shards(rows, 0, pks)
        again = np.concatenate([pks[: rows // 10], rng.integers(-(1 << 62), 1 << 62, rows // 10)])
        later = first + shards(len(again), len(first), again)
        row: dict = {}
        for name, site in ([("before", args.site)] if args.site else []) + [("after", None)]:
            directory = WORK / f"store-{name}"
            row[name] = {"new_store": probe(first, directory, site),
                         "incremental_sync": probe(later, directory, site)}
        result["sizes"][str(rows)] = row
        print(f"{rows:>9,} rows: " + "; ".join(
            f"{name}: new {r['new_store']['peak_growth_mb']} MB ({r['new_store']['seconds']} s), "
            f"sync {r['incremental_sync']['peak_growth_mb']} MB "
            f"({r['incremental_sync']['seconds']} s)" for name, r in row.items()))
    label = f"_{args.label}" if args.label else ""
    harness.write_results(harness.RESULTS / f"rescore_merge_memory{label}.json", result)


if __name__ == "__main__":
    main()
