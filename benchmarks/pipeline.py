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
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "data" / "bench" / "pipeline"
PER_FILE = 500


def corpus(passages: int) -> Path:
    """JSONL files of the first ``passages`` docstring paragraphs (one passage each, mostly)."""
    from vecpress.tasks.inputs.corpus import docstring_paragraphs

    folder = WORK / f"corpus-{passages}"
    if (folder / "done").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    items = list(itertools.islice(docstring_paragraphs(), passages))
    for start in range(0, len(items), PER_FILE):
        with (folder / f"part{start // PER_FILE:05d}.jsonl").open("w") as fh:
            for doc_id, text in items[start:start + PER_FILE]:
                fh.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    (folder / "done").write_text(str(len(items)))
    return folder


def model_env(model: str, variant: str) -> dict[str, str]:
    env = {"VECPRESS_MODEL__VARIANT": variant, "VECPRESS_MODEL__CACHE_DIR": str(WORK / "models"),
           "HF_HUB_OFFLINE": "1", "VECPRESS_GC_GRACE_S": "0",
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240"}
    if model == "tiny":
        sys.path.insert(0, str(ROOT / "tests"))
        from helpers import build_tiny_bert

        env |= {"VECPRESS_MODEL__PATH": build_tiny_bert(WORK / "tiny"),
                "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8"}
    return env


MILVUS: dict[str, str] = {}  # "uri" of a Milvus server when --milvus server


def run(folder: Path, collection: str, env: dict[str, str], site: str | None = None,
        kill_after_s: float | None = None) -> dict:
    """One `vecpress ingest` command: wall time, summary, peak RSS per process kind."""
    data = WORK / "runs"
    uri = MILVUS.get("uri") or str(data / f"{collection}.db")
    cmd = [sys.executable, "-m", "vecpress", "ingest", str(folder), "--collection", collection,
           "--storage-root", str(data), "--milvus-uri", uri, "--json"]
    full_env = os.environ | env | ({"PYTHONPATH": site} if site else {})
    full_env.pop("PREFECT_API_URL", None)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, cwd=WORK)
    peak = {"flow": 0, "worker": 0, "prefect_api": 0}
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        if kill_after_s is not None and time.perf_counter() - started >= kill_after_s:
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
            proc.wait()
            return {"killed_after_s": time.perf_counter() - started, "peak_rss_mb": peak}
        try:
            peak["flow"] = max(peak["flow"], parent.memory_info().rss >> 20)
            for child in parent.children(recursive=True):
                kind = "prefect_api" if "uvicorn" in " ".join(child.cmdline()) or \
                    "prefect" in " ".join(child.cmdline()[:4]) else "worker"
                peak[kind] = max(peak[kind], child.memory_info().rss >> 20)
        except psutil.Error:
            pass
        time.sleep(0.25)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed ({proc.returncode}):\n{err[-4000:]}")
    summary = json.loads(out[out.index("{\n"):])
    return {"wall_s": wall, "summary": summary, "peak_rss_mb": peak}


def stage_rates(summary: dict) -> dict[str, float]:
    """Passages (or items) per busy second of each stage: per core, workers have one thread."""
    return {s["stage"]: round(s["items"] / s["seconds"], 1) if s["seconds"] else None
            for s in summary["stages"]}


def embed_only(texts: list[str], env: dict[str, str], threads: int) -> float:
    """Passages/s of embedding ``texts`` in one process with ``threads`` intra-op threads."""
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.export import export_for_settings

    model = ModelSettings(variant=env["VECPRESS_MODEL__VARIANT"],
                          path=env.get("VECPRESS_MODEL__PATH"))
    artifact = export_for_settings(model, Path(env["VECPRESS_MODEL__CACHE_DIR"]))
    embedder = OnnxEmbedder(artifact, model, threads=threads)
    embedder.encode(texts[:256])  # warm
    started = time.perf_counter()
    embedder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def passage_texts(collection: str) -> list[str]:
    import pyarrow.parquet as pq

    folder = WORK / "runs" / "collections" / collection / "shards"
    return [t for part in sorted(folder.glob("*/part-*.parquet"))
            for t in pq.read_table(part, columns=["text"]).column("text").to_pylist()]


def fresh(collection: str) -> None:
    import shutil

    shutil.rmtree(WORK / "runs" / "collections" / collection, ignore_errors=True)
    for suffix in (".db", ".db.lock"):
        path = WORK / "runs" / f"{collection}{suffix}"
        if path.is_dir():  # Milvus Lite keeps its data in a folder of that name
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def machine() -> dict:
    import onnxruntime

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "onnxruntime": onnxruntime.__version__,
            "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, cwd=ROOT).stdout.strip()}


def ratio(args: argparse.Namespace) -> dict:
    env = model_env(args.model, args.variant)
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
            "stages_per_core_s": stage_rates(summary), "cluster": summary["cluster"]}


def stages(args: argparse.Namespace) -> dict:
    env = model_env(args.model, args.variant)
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

    env = model_env(args.model, args.variant)
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
    server = None
    if args.milvus == "server":
        import shutil

        from milvus import default_server as server

        shutil.rmtree(WORK / "milvus-server", ignore_errors=True)  # every run starts empty
        server.set_base_dir(str(WORK / "milvus-server"))
        server.start()
        MILVUS["uri"] = f"http://127.0.0.1:{server.listen_port}"
    try:
        result = {"mode": args.mode, "model": args.model, "variant": args.variant,
                  "milvus": args.milvus, "machine": machine()} | globals()[args.mode](args)
    finally:
        if server is not None:
            server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    sizes = "_".join(str(p) for p in args.passages)
    path = RESULTS / f"pipeline_{args.mode}_{args.model}_{args.variant}_{args.milvus}_{sizes}.json"
    path.write_text(json.dumps(result, indent=2, default=str))
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
