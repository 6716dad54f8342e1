"""Where the Dask workers of one whole `vecpress ingest` wait: every task's compute span, per worker.

Why: the 30k MiniLM ratio (pipeline.py ratio) leaves ~6-13 s per worker inside the stream that is
neither embedding nor any other task's busy time. The run's summary sums busy seconds; it cannot
say *when* a worker had nothing to do. This runs one command as a user does, with a Dask
scheduler preload (this same file, ``dask_setup``) that appends each finished task's compute span
and worker to a JSON-lines file; then it prints, per worker, the idle seconds before its first
task, between tasks (each gap named by the task that ended it) and after its last, and writes
benchmarks/results/task_spans_<model>_<passages><label>.json.

    .venv/bin/python benchmarks/task_spans.py --model minilm --corpus data/bench/pipeline/corpus-30000
    ... --site /tmp/before --label before   # an older checkout (a git worktree) for a baseline
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

SPANS_ENV = "VECPRESS_BENCH_TASK_SPANS"  # the preload's output file (benchmark only)


# ---------------------------------------------------------------------------------------------
# The scheduler preload: runs inside the command's scheduler (the flow process)


def dask_setup(scheduler: Any) -> None:
    from distributed.diagnostics.plugin import SchedulerPlugin

    out = Path(os.environ[SPANS_ENV])

    submitted: dict[str, float] = {}

    class Spans(SchedulerPlugin):
        def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
            if start == "released":  # the client's submission reached the scheduler
                submitted.setdefault(str(key), time.time())
            if start != "processing" or finish != "memory":
                return
            for span in kwargs.get("startstops", ()):
                if span.get("action") == "compute":
                    line = {"key": str(key), "worker": kwargs.get("worker"),
                            "submitted": submitted.pop(str(key), span["start"]),
                            "start": span["start"], "stop": span["stop"]}
                    with out.open("a") as f:
                        f.write(json.dumps(line) + "\n")

    scheduler.add_plugin(Spans(), name="vecpress-bench-spans")


# ---------------------------------------------------------------------------------------------
# The runner


def kind(key: str) -> str:
    """A task's step from its key (``embed_part-<uuid>`` → ``embed_part``)."""
    return key.split("-", 1)[0]


def timeline(spans: list[dict], started: float) -> list[list]:
    """[worker number, step, start s, stop s, submitted s] of every task, from the command's
    start."""
    workers = {w: i for i, w in enumerate(sorted({s["worker"] for s in spans}))}
    return [[workers[s["worker"]], kind(s["key"]), round(s["start"] - started, 2),
             round(s["stop"] - started, 2), round(s["submitted"] - started, 2)]
            for s in sorted(spans, key=lambda s: s["start"])]


def waits(tasks: list[list]) -> dict[str, float]:
    """Seconds from submission to start of the codec's fit and curve (one task each a run)."""
    return {t[1]: round(t[2] - t[4], 2) for t in tasks
            if len(t) > 4 and t[1] in ("fit_codec_job", "curve_job")}


def per_worker(tasks: list[list], wall: float) -> dict[str, dict]:
    """Busy seconds by step and idle seconds (before the first task, between tasks by the step
    that ended the gap, after the last) of each worker, from ``timeline``'s rows."""
    out: dict[str, dict] = {}
    for worker in sorted({t[0] for t in tasks}):
        mine = sorted((t[:4] for t in tasks if t[0] == worker), key=lambda t: t[2])
        busy: dict[str, float] = {}
        gaps: dict[str, float] = {}
        for before, after in itertools.pairwise(mine):
            if after[2] - before[3] > 0.05:
                gaps[after[1]] = gaps.get(after[1], 0.0) + after[2] - before[3]
        for t in mine:
            busy[t[1]] = busy.get(t[1], 0.0) + t[3] - t[2]
        out[str(worker)] = {
            "first_task_at_s": mine[0][2], "last_task_end_at_s": mine[-1][3],
            "idle_after_last_s": round(wall - mine[-1][3], 2),
            "idle_between_tasks_s": round(sum(gaps.values()), 2),
            "idle_before_step_s": {k: round(v, 2) for k, v in sorted(gaps.items())},
            "busy_s": {k: round(v, 2) for k, v in sorted(busy.items())}, "tasks": len(mine)}
    return out


def show(result: dict) -> None:
    print(f"wall {result['wall_s']:.1f} s, stream {result['stream_s']:.1f} s, "
          f"{result['passages']:,} passages")
    print(f"{'worker':>6} {'first task':>10} {'idle between':>12} {'last end':>9} "
          f"{'idle after':>10}  idle before each step (s)")
    for i, w in result["workers"].items():
        print(f"{i:>6} {w['first_task_at_s']:>10.1f} {w['idle_between_tasks_s']:>12.1f} "
              f"{w['last_task_end_at_s']:>9.1f} {w['idle_after_last_s']:>10.1f}  "
              f"{w['idle_before_step_s']}")
    print(f"queued from submission to start: {result.get('queued_s', {})}")


def main() -> None:
    import harness
    from ingest_runs import start_ingest, summary_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=[*sorted(harness.SHAPES), "minilm"], default="minilm",
                        help="minilm: the packaged model, int8 (the ratio benchmark's)")
    parser.add_argument("--corpus", type=Path, help="a folder of JSONL files")
    parser.add_argument("--label", default="")
    parser.add_argument("--site", help="an older checkout's folder, first on the command's path")
    parser.add_argument("--show", type=Path, help="only print (and re-summarise) a result's JSON")
    args = parser.parse_args()
    if args.show:
        result = json.loads(args.show.read_text())
        result["tasks"] = [[t[0], kind(t[1]), *t[2:]] for t in result["tasks"]]
        result["workers"] = per_worker(result["tasks"], result["wall_s"])
        args.show.write_text(json.dumps(result, indent=2) + "\n")
        show(result)
        return
    corpus = args.corpus.resolve()
    env = harness.model_env(args.model, "int8" if args.model == "minilm" else "fp32")
    harness.export_env_model(env)  # a first export is not what this times
    work = harness.BENCH_DIR / "task_spans"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    spans_file = work / "spans.jsonl"
    env |= {SPANS_ENV: str(spans_file),
            "DASK_DISTRIBUTED__SCHEDULER__PRELOAD": json.dumps([str(Path(__file__).resolve())])}
    started = time.time()
    proc = start_ingest(corpus, "spans", env, str(work), str(work / "milvus.db"), work,
                        subprocess.PIPE, subprocess.PIPE, args.site)
    out, err = proc.communicate()
    ended = time.time()
    if proc.returncode != 0:
        raise SystemExit(f"ingest exited {proc.returncode}:\n{err[-3000:]}")
    summary = summary_of(out)
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    tasks = timeline(spans, started)
    wall = round(ended - started, 2)
    label = f"_{args.label}" if args.label else ""
    result = {"what": __doc__.split("\n")[0], "machine": harness.machine("onnxruntime", git=True),
              "model": args.model, "passages": summary["passages"], "wall_s": wall,
              "stream_s": round(summary.get("stream_seconds", 0), 2),
              "stages_s": {s["stage"]: round(s["seconds"], 2) for s in summary["stages"]},
              "workers": per_worker(tasks, wall), "queued_s": waits(tasks), "tasks": tasks}
    show(result)
    harness.write_results(
        harness.RESULTS / f"task_spans_{args.model}_{summary['passages']}{label}.json", result,
        quiet=True)


if __name__ == "__main__":
    main()
