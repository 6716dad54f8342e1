"""When each line of a whole `vecpress ingest` appears: where a run's fixed seconds go.

Why: at 30k MiniLM passages, or 100k with a nearly free model, ~7 s of the command lie outside its
streamed stages (start, cluster, Milvus, the end), and the summary times the stages only. This
runs one command as a user does (the nano model of scale.py, the local Prefect server already up
unless it is the first run) and stamps every line of its standard error with the seconds since
the command started. Results: benchmarks/results/ingest_timeline_<model>_<passages>.json.

    .venv/bin/python benchmarks/ingest_timeline.py [--model nano] [--corpus FOLDER]
    .venv/bin/python benchmarks/ingest_timeline.py --model minilm --corpus data/bench/pipeline/corpus-30000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import time
from pathlib import Path

import harness
from ingest_runs import start_ingest

WORK = harness.BENCH_DIR / "timeline"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=[*sorted(harness.SHAPES), "minilm"], default="nano",
                        help="minilm: the packaged model, int8 (the ratio benchmark's)")
    parser.add_argument("--corpus", type=Path,
                        default=harness.BENCH_DIR / "scale" / "corpus-100000-of-100000",
                        help="a folder of JSONL files (scale.py builds this one)")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    args.corpus = args.corpus.resolve()  # the command runs in WORK
    if args.model == "minilm":
        env = harness.model_env("minilm", "int8")
        harness.export_env_model(env)  # a first export is not what this times
    else:
        env = harness.model_env(args.model, "fp32") | {
            "VECPRESS_CODEC__PCA_DIM": "16", "VECPRESS_CODEC__PQ_M": "4", "VECPRESS_GC_GRACE_S": "0"}
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    started = time.perf_counter()
    proc = start_ingest(args.corpus, "timeline", env, str(WORK), str(WORK / "milvus.db"), WORK,
                        subprocess.PIPE, subprocess.PIPE)
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append([round(time.perf_counter() - started, 2), line.rstrip()[:200]])
        print(f"{lines[-1][0]:7.2f}  {lines[-1][1]}")
    proc.wait()
    lines.append([round(time.perf_counter() - started, 2), f"exit {proc.returncode}"])
    print(f"{lines[-1][0]:7.2f}  {lines[-1][1]}")
    label = f"_{args.label}" if args.label else ""
    passages = sum(1 for f in args.corpus.glob("*.jsonl") for _ in f.open())
    harness.write_results(
        harness.RESULTS / f"ingest_timeline_{args.model}_{passages}{label}.json",
        {"what": __doc__.split("\n")[0], "machine": harness.machine("onnxruntime", git=True),
         "model": args.model, "records": passages, "stderr_lines_s": lines}, quiet=True)


if __name__ == "__main__":
    main()
