"""The read + chunk stage without a profiler: wall and CPU per passage, this checkout against a
baseline checkout, in the same run (issue 24).

``profile_stages.py`` explains where the time goes, but cProfile charges each Python call and
counts the garbage collector's passes in whichever call allocated: it cannot show a change that
removes calls or collections. Here ``shard_jobs.chunk_files`` runs on the same docstring JSONL
(``pipeline.corpus``) in a fresh process per repeat (started by multiprocessing, as Dask's worker
processes are: ``per_worker`` freezes only there), the two checkouts alternating, and reports
per passage: wall time, the process's CPU time (the tokenizer's threads included) and the time
spent in collections (``gc.callbacks``). The ratio is this checkout's median over the baseline's.

    git worktree add /tmp/before <commit> --detach
    .venv/bin/python benchmarks/chunk_stage.py --baseline /tmp/before [--passages 300000]
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import harness


def measure(passages: int) -> dict:
    """One ``chunk_files`` over the corpus, in this process, with whichever vecpress it imports."""
    from pipeline import corpus

    from vecpress.infra.settings import Settings
    from vecpress.tasks.ingest.shard_jobs import chunk_files
    from vecpress.tasks.inputs.sources import discover

    env = harness.model_env("tiny", "fp32")
    artifact = harness.export_env_model(env)
    settings = Settings(model={"path": env["VECPRESS_MODEL__PATH"], "variant": "fp32",
                               "tokenizer_processes": 0}, chunk={"keep_token_ids": True})
    files, errors = discover([str(corpus(passages))], settings.inputs)
    assert not errors, errors[:3]
    collecting = {"seconds": 0.0, "since": 0.0}

    def on_gc(phase: str, _: dict) -> None:
        if phase == "start":
            collecting["since"] = time.perf_counter()
        else:
            collecting["seconds"] += time.perf_counter() - collecting["since"]

    with tempfile.TemporaryDirectory() as out:
        gc.callbacks.append(on_gc)
        cpu, wall = time.process_time(), time.perf_counter()
        result = chunk_files(files, str(Path(out) / "part"), settings.inputs, settings.chunk,
                             artifact.model_dir, 20_000)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        gc.callbacks.remove(on_gc)
    n = result.passages
    return {"passages": n, "wall_us": round(1e6 * wall / n, 1), "cpu_us": round(1e6 * cpu / n, 1),
            "gc_us": round(1e6 * collecting["seconds"] / n, 1)}


def run_child(passages: int, pythonpath: str | None, one_thread: bool) -> dict:
    env = dict(os.environ)
    if one_thread:  # what one busy core of a worker does: no tokenizer threads
        env["TOKENIZERS_PARALLELISM"] = "false"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath  # ahead of the editable install: the baseline's vecpress
    done = subprocess.run([sys.executable, __file__, "--child", "--passages", str(passages)],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", help="a checkout of the code to compare with")
    parser.add_argument("--label", default="")
    parser.add_argument("--one-thread", action="store_true",
                        help="the tokenizer on one thread (TOKENIZERS_PARALLELISM=false)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # in a process that multiprocessing started, as Dask's workers are
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            print(json.dumps(pool.submit(measure, args.passages).result()))
        return
    checkouts = {"baseline": args.baseline, "this": None} if args.baseline else {"this": None}
    runs: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(args.repeats):
        for name, path in checkouts.items():
            runs[name].append(run_child(args.passages, path, args.one_thread))
            print(name, runs[name][-1], flush=True)
    medians = {name: {key: statistics.median(r[key] for r in rs)
                      for key in ("wall_us", "cpu_us", "gc_us")} for name, rs in runs.items()}
    result = {"what": __doc__.split("\n\n")[0], "machine": harness.machine("tokenizers", git=True),
              "baseline": _commit(args.baseline) if args.baseline else None,
              "passages": runs["this"][0]["passages"], "repeats": args.repeats,
              "one_thread": args.one_thread, "runs": runs,
              "median_us_per_passage": medians}
    if args.baseline:
        result["this_over_baseline"] = {key: round(medians["this"][key] / medians["baseline"][key], 3)
                                        for key in ("wall_us", "cpu_us")}
    print(f"{'checkout':10} {'wall µs':>8} {'CPU µs':>8} {'GC µs':>7}   (median per passage)")
    for name, row in medians.items():
        print(f"{name:10} {row['wall_us']:8.1f} {row['cpu_us']:8.1f} {row['gc_us']:7.1f}")
    if args.baseline:
        print("this ÷ baseline:", result["this_over_baseline"])
    suffix = f"_{args.label}" if args.label else ""
    harness.write_results(harness.RESULTS / f"chunk_stage_{args.passages}{suffix}.json", result)


def _commit(path: str) -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=path).stdout.strip()


if __name__ == "__main__":
    main()
