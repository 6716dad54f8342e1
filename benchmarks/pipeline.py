"""End-to-end ingest against embedding alone, stage by stage, memory, and the cost of a crash.

Whole `vecpress ingest` commands (a fresh process each, as a user runs them) on real passages: the
docstring paragraphs of the standard library and the installed site-packages, written as JSONL
files of 500 records. Each process tree is sampled every 0.25 s for peak RSS (the flow process and
the largest Dask worker; the temporary Prefect API is reported apart).

    python benchmarks/pipeline.py ratio --model minilm --variant int8 --passages 50000
    python benchmarks/pipeline.py stages --model tiny --passages 20000 200000 [--before SITE]
    python benchmarks/pipeline.py crash --model tiny --passages 20000

- ratio: end-to-end passages/s (whole command, and the streamed stages alone) divided by the
  passages/s of embedding the same passages in one process with the same cores, same run.
- stages: passages/s per core of each stage (busy seconds summed over the workers) and end to end.
  ``--before SITE`` runs the same command with an older vecpress installed under SITE
  (``pip install --no-deps --target SITE <old checkout>``) for a before/after table.
- crash: an uninterrupted run, then a run killed (SIGKILL, whole process group) at 65% of that
  run's wall time and run again: rows, and the passages embedded twice.

``--model tiny`` is a random 1-layer, 64-d BERT with MiniLM's tokenizer: embedding is nearly free,
as on a GPU box, so what the other stages cost shows. Results: benchmarks/results/pipeline_*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from contextlib import ExitStack
from pathlib import Path

import corpora
import harness
from ingest_runs import TreeMemory, stage_rates, start_ingest, summary_of, watch

WORK = harness.BENCH_DIR / "pipeline"


def corpus(passages: int) -> Path:
    """JSONL files of the first ``passages`` docstring paragraphs (one passage each, mostly)."""
    folder = WORK / f"corpus-{passages}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    written = corpora.write_parts(folder, ({"id": doc_id, "text": text}
                                           for doc_id, text in corpora.docstrings(passages)))
    (folder / "done").write_text(str(written))
    return folder


MILVUS: dict[str, str] = {}  # "uri" of a Milvus server when --milvus server


def run(folder: Path, collection: str, env: dict[str, str], site: str | None = None,
        kill_after_s: float | None = None) -> dict:
    """One `vecpress ingest` command: wall time, summary, peak RSS per process kind."""
    data = WORK / "runs"
    uri = MILVUS.get("uri") or str(data / f"{collection}.db")
    clock = harness.Stopwatch()
    proc = start_ingest(folder, collection, env, str(data), uri, WORK, subprocess.PIPE, subprocess.PIPE,
                        site)
    memory = TreeMemory()
    killed = watch(proc, memory, clock, kill_after_s)
    by_kind = memory.by_kind_mb()
    peak = {"flow": max(by_kind.get("flow", [0])),
            "worker": max([0, *(mb for kind, peaks in by_kind.items()
                                if kind not in ("flow", "prefect_api") for mb in peaks)]),
            "prefect_api": max(by_kind.get("prefect_api", [0]))}
    if killed:
        return {"killed_after_s": clock.seconds, "peak_rss_mb": peak}
    out, err = proc.communicate()
    wall = clock.seconds
    cpu = memory.cpu_by_kind_s()
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}):\n{err[-4000:]}")
    return {"wall_s": wall, "summary": summary_of(out), "peak_rss_mb": peak, "cpu_s": cpu}


def embed_only(texts: list[str], env: dict[str, str], threads: int) -> float:
    """Passages/s of embedding ``texts`` in one process with ``threads`` intra-op threads."""
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    model = ModelSettings(variant=env["VECPRESS_MODEL__VARIANT"],
                          path=env.get("VECPRESS_MODEL__PATH"))
    embedder = OnnxEmbedder(harness.export_env_model(env), model, threads=threads)
    embedder.encode(texts[:256])  # warm
    return len(texts) / harness.timed(lambda: embedder.encode(texts))


def passage_texts(collection: str) -> list[str]:
    import pyarrow.parquet as pq

    folder = WORK / "runs" / "collections" / collection / "shards"
    return [t for part in sorted(folder.glob("*/part-*.parquet"))
            for t in pq.read_table(part, columns=["text"]).column("text").to_pylist()]


def fresh(collection: str) -> None:
    shutil.rmtree(WORK / "runs" / "collections" / collection, ignore_errors=True)
    for suffix in (".db", ".db.lock"):
        path = WORK / "runs" / f"{collection}{suffix}"
        if path.is_dir():  # Milvus Lite keeps its data in a folder of that name
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def ratio(args: argparse.Namespace) -> dict:
    env = harness.model_env(args.model, args.variant)
    folder = corpus(args.passages[0])
    name = f"ratio_{args.model}"
    fresh(name)
    ingest = run(folder, name, env)
    texts = passage_texts(name)
    rate = embed_only(texts, env, os.cpu_count() or 1)
    summary = ingest["summary"]
    end_to_end = summary["passages"] / ingest["wall_s"]
    streamed = summary["passages"] / summary["stream_seconds"]
    return {"passages": summary["passages"], "embed_only_per_s": round(rate, 1),
            "ingest_command_per_s": round(end_to_end, 1), "streamed_per_s": round(streamed, 1),
            "ratio_command": round(end_to_end / rate, 3),
            "ratio_streamed": round(streamed / rate, 3),
            "wall_s": round(ingest["wall_s"], 1), "peak_rss_mb": ingest["peak_rss_mb"],
            "cpu_s_by_process_kind": ingest["cpu_s"],
            "stages_per_core_s": stage_rates(summary),
            "stages_s": {s["stage"]: round(s["seconds"], 2) for s in summary["stages"]},
            "cluster": summary["cluster"]}


def stages(args: argparse.Namespace) -> dict:
    env = harness.model_env(args.model, args.variant)
    out: dict = {}
    for passages in args.passages:
        folder = corpus(passages)
        for label, site in (("after", None), ("before", args.before)):
            if label == "before" and not site:
                continue
            name = f"stages_{args.model}_{label}_{args.milvus}_{passages}"
            fresh(name)
            result = run(folder, name, env, site)
            summary = result["summary"]
            out[f"{label}_{passages}"] = {
                "passages": summary["passages"], "wall_s": round(result["wall_s"], 1),
                "end_to_end_per_s": round(summary["passages"] / result["wall_s"], 1),
                "peak_rss_mb": result["peak_rss_mb"], "stages": summary["stages"],
                "per_s": stage_rates(summary)}
            print(json.dumps({k: out[f"{label}_{passages}"][k] for k in
                              ("passages", "wall_s", "end_to_end_per_s", "peak_rss_mb")}),
                  flush=True)
    return out


def crash(args: argparse.Namespace) -> dict:
    from vecpress.tasks.collection.catalog import Catalog

    env = harness.model_env(args.model, args.variant)
    folder = corpus(args.passages[0])
    fresh("crash_reference")
    reference = run(folder, "crash_reference", env)
    fresh("crash_killed")
    kill_at = 0.65 * reference["wall_s"]
    killed = run(folder, "crash_killed", env, kill_after_s=kill_at)
    ledger = Catalog(str(WORK / "runs" / "collections" / "crash_killed")).read("shards").to_pylist()
    kept = sum(r["rows"] for r in ledger if r["state"] in ("encoded", "loaded", "embedded"))
    # Shards whose output was written but not yet committed: embedded by the killed run, redone.
    written = sum(r["rows"] for r in ledger if r["state"] == "chunked" and any(
        not p.name.startswith("part-")
        for p in Path(r["passages_url"]).parent.glob(f"*-{r['part']:04d}.parquet")))
    rerun = run(folder, "crash_killed", env)
    total = reference["summary"]["passages"]
    again = rerun["summary"]
    rows = again["rows_in_milvus"] or reference["summary"]["rows_in_milvus"]
    return {"passages": total, "reference_wall_s": round(reference["wall_s"], 1),
            "killed_after_s": round(killed["killed_after_s"], 1),
            "committed_at_kill": kept, "rerun_embedded": again["passages_embedded"],
            "embedded_twice_written_not_committed": written,
            "embedded_twice_share": round(written / total, 4),
            "rerun_wall_s": round(rerun["wall_s"], 1),
            "rows_reference": reference["summary"]["rows_in_milvus"], "rows_after_rerun": rows,
            "shards": again["shards"], "shards_skipped": again["shards_skipped"],
            "shards_resumed": again["shards_resumed"],
            "files_unchanged_on_rerun": again["changes"]["unchanged"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["ratio", "stages", "crash"])
    parser.add_argument("--model", choices=["minilm", "tiny"], default="tiny")
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--passages", type=int, nargs="+", default=[20000])
    parser.add_argument("--before", help="site folder of an older vecpress (stages mode)")
    parser.add_argument("--milvus", choices=["lite", "server"], default="lite",
                        help="server: a Milvus 2.3.5 standalone (pip milvus) started here; with "
                        "Milvus Lite the flow process also hosts the database")
    args = parser.parse_args()
    with ExitStack() as stack:
        if args.milvus == "server":
            shutil.rmtree(WORK / "milvus-server", ignore_errors=True)  # every run starts empty
            server = stack.enter_context(harness.milvus_server(WORK / "milvus-server"))
            MILVUS["uri"] = harness.server_uri(server)
        result = {"mode": args.mode, "model": args.model, "variant": args.variant,
                  "milvus": args.milvus, "machine": harness.machine("onnxruntime", git=True)} | \
            globals()[args.mode](args)
    sizes = "_".join(str(p) for p in args.passages)
    name = f"pipeline_{args.mode}_{args.model}_{args.variant}_{args.milvus}_{sizes}.json"
    path = harness.write_results(harness.RESULTS / name, result, quiet=True)
    table(result)
    print(f"wrote {path}")


def table(result: dict, prefix: str = "") -> None:
    """The result as a two-column table (nested keys joined with dots)."""
    from rich.console import Console
    from rich.table import Table

    rows: list[tuple[str, str]] = []

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                walk(item.get("seconds"), f"{key}.{item.get('stage', '?')} (s)")
        else:
            rows.append((key, str(value)))

    walk(result, prefix)
    out = Table(title=f"pipeline benchmark: {result['mode']}", show_header=False)
    out.add_column("what")
    out.add_column("value", justify="right")
    for key, value in rows:
        out.add_row(key, value)
    Console().print(out)


if __name__ == "__main__":
    main()
