"""Bytes kept per passage, tier by tier, after a default `vecpress ingest` as a user runs it.

For each corpus (benchmarks/corpora.py): ``--docs`` documents as JSONL files, ingested with no
settings into a new folder (packaged MiniLM, Milvus Lite, ``--no-server``); the run summary's
measured footprint (``tasks.search.footprint``) is printed and saved, next to what FP32 vectors
plus the text once would take (the issue's yardstick) and the text alone (UTF-8), with the
recall@10 vs exact FP32 of ``--queries`` held-out documents (the ingest's --eval-queries). The figures are
the files' own bytes: the summary is checked against a walk of the folders here too. Writes
benchmarks/results/footprint_<label>.json.

    .venv/bin/python benchmarks/footprint.py [--docs 10000] [--corpora docstrings fortunes]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from corpora import load, write_parts
from harness import RESULTS, Stopwatch, machine, write_results

FP32_DIM = 384  # the packaged model's width


def _walk_bytes(folder: Path, skip: str = "") -> int:
    return sum(p.stat().st_size for p in folder.rglob("*")
               if p.is_file() and not p.is_symlink() and not (skip and skip in p.parts))


def run_corpus(name: str, docs: int, queries: int, work: Path, env: dict[str, str]) -> dict:
    items = load(name, docs + queries)
    items, held = items[:docs], items[docs:]
    folder = work / name
    (folder / "input").mkdir(parents=True)
    write_parts(folder / "input", ({"id": i, "text": t} for i, t in items))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                                  for i, t in held))
    text_bytes = sum(len(t.encode()) for _, t in items)
    clock = Stopwatch()
    vecpress = str(Path(sys.executable).with_name("vecpress"))
    done = subprocess.run([vecpress, "ingest", "input", "--no-server", "--json",
                           *(["--eval-queries", "queries.jsonl"] if held else [])], env=env,
                          cwd=folder, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name}: ingest failed ({done.returncode}): {done.stderr[-2000:]}")
    summary = json.loads(done.stdout[done.stdout.index("{\n"):])
    footprint, passages = summary["footprint"], summary["footprint"]["passages"]
    data = folder / "data"
    walked = (_walk_bytes(data / "collections" / "vecpress", skip="runs")
              + _walk_bytes(data / "milvus.db" / "collections" / summary["build"]))
    at_rest = footprint["totals_per_passage"]["at rest, all tiers (run logs apart)"]
    return {"corpus": name, "documents": len(items), "passages": passages,
            "ingest_s": round(clock.seconds, 1), "codec": summary["codec"].get("codec_id"),
            "index": summary["index"].get("index_type"),
            "recall": summary["recall"], "footprint": footprint,
            "text_utf8_bytes_per_passage": round(text_bytes / passages, 1),
            "fp32_plus_text_bytes_per_passage": round(4 * FP32_DIM + text_bytes / passages, 1),
            "walked_at_rest_bytes_per_passage": round(walked / passages, 1),
            "at_rest_over_fp32_plus_text": round(at_rest / (4 * FP32_DIM + text_bytes / passages),
                                                 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=10000)
    parser.add_argument("--corpora", nargs="+", default=["docstrings", "fortunes"])
    parser.add_argument("--queries", type=int, default=200,
                        help="documents held out of the ingest as its --eval-queries: recall@10 "
                             "vs exact FP32")
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="footprint-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "VECPRESS_"))}
    env |= {"HF_HUB_OFFLINE": "1"}
    rows = [run_corpus(name, args.docs, args.queries, work, env) for name in args.corpora]
    for row in rows:
        totals = row["footprint"]["totals_per_passage"]
        print(f"\n{row['corpus']}: {row['documents']:,} documents, {row['passages']:,} passages, "
              f"{row['codec']}, {row['index']}, ingest {row['ingest_s']} s")
        for tier, figures in row["footprint"]["tiers"].items():
            for kind, per in figures["bytes_per_passage"].items():
                print(f"  {tier:28s} {kind:52s} {per:9,.0f} B")
        print(f"  at rest, all tiers {totals['at rest, all tiers (run logs apart)']:,.0f} B "
              f"(walked: {row['walked_at_rest_bytes_per_passage']:,.0f}); FP32 + text once "
              f"{row['fp32_plus_text_bytes_per_passage']:,.0f} B; ratio "
              f"{row['at_rest_over_fp32_plus_text']}; RAM while serving "
              f"{totals['RAM while serving']:,.0f} B; recall {row['recall']}")
    write_results(RESULTS / f"footprint_{args.label}.json",
                  {"what": __doc__.split("\n\n")[0], "machine": machine(git=True),
                   "docs": args.docs, "rows": rows})


if __name__ == "__main__":
    main()
