"""Scale benchmark: whole `vecpress ingest` commands at 100k, 300k and 1M real passages on one machine.

What it measures, per corpus size: the wall time of every stage (from the run's ``summary.json``)
and of the whole command, end-to-end passages/s, the peak RSS of the flow process and of each Dask
worker (sampled every 0.25 s, with a coarse timeline so memory that grows with the run shows),
bytes on the storage root per passage split by catalog / shards / codecs / runs, Milvus rows/s of
the load, and the Milvus Lite ``.db`` (or Milvus server data folder) size per row.

Why: ``benchmarks/pipeline.py`` measures 20k-200k passages; whether a 2-core machine takes 1M is a
question of what grows with the corpus (memory, catalog, per-shard overheads, Milvus), not of the
model. So the model is ``--model tiny`` of pipeline.py (a random 1-layer, 64-d BERT with MiniLM's
tokenizer), whose embedding costs little beside MiniLM's, so every other stage shows at full size.

Real passages: the standard library's and site-packages' docstrings give ~200k, so the corpus adds
other real text installed on the machine (``scale_corpus.py``: package descriptions, fortunes,
source comments, documentation files, man pages...): paragraphs of 8-200 words, mostly letters,
exact duplicates dropped. The pool (the first ``max(--passages)`` of that stream) is shuffled once
with a fixed seed and each size takes a prefix, so every size of one invocation has the same mix of
kinds. The JSON says how many passages and distinct source files (or packages) each kind gave.
Cached under data/bench/scale/ (git-ignored); delete it to rebuild.

    .venv/bin/python benchmarks/scale.py --passages 100000 300000 1000000 --milvus lite
    .venv/bin/python benchmarks/scale.py --passages 100000 --milvus server [--storage-root DIR]

``--milvus server`` starts the Milvus 2.3.5 standalone of the ``milvus`` PyPI package (a dev
dependency), with an empty data folder for each size. ``--storage-root`` defaults to a fresh folder
per size (data/bench/scale/runs/<milvus>-<size>/storage); a given root is shared by the sizes, each
size in its own collection (``scale_<milvus>_<size>``, removed first). Results, written after
every size: benchmarks/results/scale_<model>_<milvus>_<sizes>.json. ``--model nano`` (16-d) embeds at
about the tokenizer's cost, which the 64-d tiny model does not on a CPU (harness.SHAPES).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import harness
import psutil
from ingest_runs import TreeMemory, stage_rates, start_ingest, summary_of, watch
from scale_corpus import SCALE, corpus
from scale_disk import fresh_storage, milvus_bytes, read_summary, storage_bytes

TIMELINE_POINTS = 240

# ---------------------------------------------------------------------------------------------
# One ingest command, its process tree and what it left on disk


def ingest(folder: Path, collection: str, env: dict[str, str], storage_root: str, milvus_uri: str,
           logs: Path, server_pid: int | None = None) -> dict:
    """One `vecpress ingest` command: wall time, summary, peak RSS and CPU seconds of each process
    (and of the Milvus server, ``server_pid``), a timeline."""
    logs.mkdir(parents=True, exist_ok=True)
    clock = harness.Stopwatch()
    memory = TreeMemory(server_pid)
    # Output to files, not pipes: a long run's log lines would fill a pipe and stall the command.
    with (logs / "stdout.txt").open("w") as out, (logs / "stderr.txt").open("w") as err:
        proc = start_ingest(folder, collection, env, storage_root, milvus_uri, logs, out, err)
        watch(proc, memory, clock)
    wall = clock.seconds
    if proc.returncode != 0:
        tail = (logs / "stderr.txt").read_text(errors="replace")[-4000:]
        return {"error": f"ingest exited {proc.returncode}", "stderr_tail": tail, "wall_s": wall}
    summary = summary_of((logs / "stdout.txt").read_text())
    saved = read_summary(storage_root, collection, summary.get("run_id", ""))
    by_kind = memory.by_kind_mb()
    timeline = memory.timeline
    step = max(1, len(timeline) // TIMELINE_POINTS)
    return {"wall_s": wall, "summary": saved or summary, "summary_source":
            "summary.json" if saved else "stdout",
            "peak_rss_mb": {"flow": max(by_kind.get("flow", [0])),
                            "workers": sorted(by_kind.get("worker", []), reverse=True),
                            "worker_children": sorted(by_kind.get("worker_child", []), reverse=True),
                            "prefect_api": max(by_kind.get("prefect_api", [0])),
                            # None: Milvus Lite runs inside the flow process (milvus-lite 3)
                            "milvus_lite_process": max(by_kind["milvus"]) if "milvus" in by_kind
                            else None,
                            "milvus_server": max(by_kind["milvus_server"]) if "milvus_server" in by_kind
                            else None,
                            "helpers": max(by_kind.get("helper", [0]))},
            "cpu_s_by_process_kind": memory.cpu_by_kind_s(),
            "first_worker_s": next((t for t, _, w, _, _ in timeline if w), None),
            "rss_timeline_mb": {"columns": ["t_s", "flow", "workers_sum", "other_children",
                                            "milvus_server"],
                                "points": timeline[::step]}}


def tokenizer_floor(folder: Path, model_dir: str) -> dict:
    """``encode_batch`` (the tokenizer's own thread pool, every core) of the input records' texts,
    one call per file, after the ingest: what any pipeline pays to tokenise this corpus once. The
    run's end-to-end passages/s is reported against it (issue 24: goal ≥ 0.25)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    parts = [[json.loads(line)["text"] for line in part.open(encoding="utf-8")]
             for part in sorted(folder.glob("*.jsonl"))]
    clock = harness.Stopwatch()
    for texts in parts:
        tok.encode_batch(texts, add_special_tokens=False)
    seconds = clock.seconds
    count = sum(len(texts) for texts in parts)
    return {"texts": count, "seconds": round(seconds, 2), "texts_per_s": round(count / seconds)}


# ---------------------------------------------------------------------------------------------
# Per size


def one_size(passages: int, pool_size: int, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One ingest of ``passages`` into a fresh collection (and a fresh Milvus): its row of the JSON."""
    clock = harness.Stopwatch()
    folder, kinds = corpus(passages, pool_size)
    corpus_s = clock.seconds
    collection = f"scale_{args.milvus}_{passages}"
    work = SCALE / "runs" / f"{args.milvus}-{passages}"
    shutil.rmtree(work, ignore_errors=True)
    storage_root = args.storage_root or str(work / "storage")
    fresh_storage(storage_root, collection)
    if args.milvus == "lite":
        db = work / "milvus.db"
        result = ingest(folder, collection, env, storage_root, str(db), work / "logs")
        db_bytes = milvus_bytes("lite", db)
    else:
        base = SCALE / "milvus-server"  # a fresh data folder; the unpacked binaries are kept
        for sub in ("data", "logs"):
            shutil.rmtree(base / sub, ignore_errors=True)
        with harness.milvus_server(base) as server:
            result = ingest(folder, collection, env, storage_root, harness.server_uri(server), work / "logs",
                            server.server_proc.pid)
            db_bytes = milvus_bytes("server", base / "data")
    row = {"records": passages, "corpus": str(folder.relative_to(harness.ROOT)), "corpus_kinds": kinds,
           "corpus_prepare_s": round(corpus_s, 1), "storage_root": storage_root,
           "logs": str((work / "logs").relative_to(harness.ROOT))}
    if "error" in result:
        return row | result
    floor = tokenizer_floor(folder, env["VECPRESS_MODEL__PATH"])
    summary = result["summary"]
    stages = {s["stage"]: round(s["seconds"], 2) for s in summary["stages"]}
    found = {s["stage"]: s for s in summary["stages"]}
    upsert = next((s for name, s in found.items() if name.startswith("Milvus upsert")), None)
    flush = next((s for name, s in found.items() if name.startswith("Milvus flush")), None)
    rows = summary.get("rows_in_milvus") or 0
    load_s = (upsert["seconds"] if upsert else 0) + (flush["seconds"] if flush else 0)
    disk = storage_bytes(storage_root, collection)
    n = summary["passages"] or 1
    milvus_total = sum(db_bytes.values())
    # The model stage's label before and after the run's headline lines.
    model_s = stages.get("model: export, or its cache", stages.get("model export (cached)", 0))
    return row | {
        "passages": summary["passages"], "rows_in_milvus": rows, "shards": summary.get("shards"),
        "rows_bulk_imported": summary.get("rows_bulk_imported", 0),
        "cluster": summary.get("cluster"), "wall_s": round(result["wall_s"], 1),
        "wall_s_excl_model_export": round(result["wall_s"] - model_s, 1),
        "first_worker_s": result["first_worker_s"],
        "end_to_end_per_s": round(summary["passages"] / result["wall_s"], 1),
        "tokenizer_floor": floor,
        "end_to_end_over_floor": round(summary["passages"] / result["wall_s"]
                                       / floor["texts_per_s"], 3),
        "stream_wall_s": round(summary.get("stream_seconds", 0), 1),
        "stages_s": stages, "stages_per_s": stage_rates(summary),
        "summary_source": result["summary_source"],
        "peak_rss_mb": result["peak_rss_mb"],
        "cpu_s_by_process_kind": result["cpu_s_by_process_kind"],
        "milvus_load": {
            "upsert_rows_per_busy_s": round(upsert["items"] / upsert["seconds"], 1)
            if upsert and upsert["seconds"] else None,
            "flush_index_count_s": round(flush["seconds"], 2) if flush else None,
            "rows_per_s_upsert_plus_flush_index": round(rows / load_s, 1) if load_s else None},
        "storage_bytes": disk,
        "catalog_commits": disk["catalog_commits"],
        "storage_bytes_per_passage": {
            "total_excl_models": round(disk["total_excl_models"] / n, 1),
            **{k: round(v / n, 1) for k, v in disk["collection"].items()},
            **{f"shards.{k}": round(v / n, 1) for k, v in disk["shard_files"].items()}},
        "milvus_bytes": db_bytes,
        "milvus_bytes_per_row": {"total": round(milvus_total / rows, 1) if rows else None,
                                 **{k: round(v / rows, 1) for k, v in db_bytes.items() if rows}},
        "index": summary.get("index"), "codec": summary.get("codec"),
        "bytes_per_vector": summary.get("bytes_per_vector"),
        "rss_timeline_mb": result["rss_timeline_mb"],
    }


VERSIONS = ("vecpress", "onnxruntime", "pymilvus", "milvus-lite", "milvus", "dask", "distributed",
            "prefect", "pyarrow", "deltalake", "faiss-cpu", "numpy")


def table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    sizes = result["sizes"]
    out = Table(title=f"scale benchmark: {result['model'].split()[0]} model, "
                      f"Milvus {result['milvus']}")
    out.add_column("metric")
    for key in sizes:
        out.add_column(key, justify="right")

    def cell(row: dict, path: tuple[str, ...]) -> str:
        value: object = row
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, list):
            return " ".join(str(v) for v in value)
        return "-" if value is None else f"{value:,}" if isinstance(value, int | float) else str(value)

    rows: list[tuple[str, tuple[str, ...]]] = [
        ("passages", ("passages",)), ("rows in Milvus", ("rows_in_milvus",)),
        ("shards", ("shards",)), ("whole command (s)", ("wall_s",)),
        ("first Dask worker up at (s)", ("first_worker_s",)),
        ("end to end passages/s", ("end_to_end_per_s",)),
        ("tokenizer floor: encode_batch texts/s", ("tokenizer_floor", "texts_per_s")),
        ("end to end ÷ tokenizer floor", ("end_to_end_over_floor",)),
        ("streamed wall (s)", ("stream_wall_s",))]
    stage_names = list(dict.fromkeys(s for row in sizes.values() for s in row.get("stages_s", {})))
    rows += [(f"{s} (s)", ("stages_s", s)) for s in stage_names]
    rows += [("peak RSS flow (MB)", ("peak_rss_mb", "flow")),
             ("peak RSS workers (MB)", ("peak_rss_mb", "workers")),
             ("peak RSS Prefect API (MB)", ("peak_rss_mb", "prefect_api")),
             ("peak RSS Milvus server (MB)", ("peak_rss_mb", "milvus_server")),
             ("catalog commits: shards table", ("catalog_commits", "shards")),
             ("Milvus upsert rows/busy s", ("milvus_load", "upsert_rows_per_busy_s")),
             ("Milvus flush+index+count (s)", ("milvus_load", "flush_index_count_s")),
             ("Milvus rows/s (upsert+flush+index)", ("milvus_load", "rows_per_s_upsert_plus_flush_index"))]
    parts = list(dict.fromkeys(k for row in sizes.values()
                               for k in row.get("storage_bytes_per_passage", {})))
    rows += [(f"storage B/passage: {k}", ("storage_bytes_per_passage", k)) for k in parts]
    parts = list(dict.fromkeys(k for row in sizes.values() for k in row.get("milvus_bytes_per_row", {})))
    rows += [(f"Milvus B/row: {k}", ("milvus_bytes_per_row", k)) for k in parts]
    rows += [("error", ("error",))]
    for label, path in rows:
        cells = [cell(row, path) for row in sizes.values()]
        if label != "error" or any(c != "-" for c in cells):
            out.add_row(label, *cells)
    Console().print(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passages", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    parser.add_argument("--milvus", choices=["lite", "server"], default="lite")
    parser.add_argument("--model", choices=sorted(harness.SHAPES), default="tiny",
                        help="nano: embedding at about the tokenizer's cost (harness.SHAPES)")
    parser.add_argument("--storage-root", help="default: a fresh local folder per size")
    parser.add_argument("--bulk", action="store_true", help="server: first loads by Milvus bulk "
                        "import (milvus.bulk_dir on this machine, default bulk_min_rows)")
    parser.add_argument("--pool", type=int, help="passages drawn before shuffling (default: the "
                        "largest size); the same pool gives every size the same mix of kinds")
    args = parser.parse_args()
    sizes = sorted(args.passages)
    pool = max(args.pool or 0, sizes[-1])
    env = harness.model_env(args.model, "fp32")
    if args.bulk:
        env |= {"VECPRESS_MILVUS__BULK_DIR": str(SCALE / "bulk")}  # imports of >= 50k rows
    kind = args.milvus + ("_bulk" if args.bulk else "")
    path = harness.RESULTS / f"scale_{args.model}_{kind}_{'_'.join(str(s) for s in sizes)}.json"
    hidden, heads, intermediate = harness.SHAPES[args.model]
    result: dict = {"benchmark": "scale", "model": f"{args.model} (1 layer, {hidden} hidden, "
                    f"{heads} heads, {intermediate} intermediate, MiniLM tokenizer)",
                    "variant": "fp32", "milvus": args.milvus, "bulk_import": args.bulk, "pool": pool,
                    "machine": harness.machine("onnxruntime", git=True) |
                    {"memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
                    "versions": harness.versions(*VERSIONS), "env": env,
                    # settings set in the shell reach the command too: recorded with the run
                    "env_from_shell": {k: v for k, v in os.environ.items()
                                       if k.startswith("VECPRESS_") and k not in env},
                    "sizes": {}}
    # The tiny model exported into the shared cache first, so that no size pays a first export.
    result["model_warm_up_s"] = round(harness.timed(lambda: harness.export_env_model(env)), 1)
    for passages in sizes:
        print(f"== {passages:,} passages, Milvus {args.milvus}", flush=True)
        row = one_size(passages, pool, args, env)
        result["sizes"][str(passages)] = row
        result["pool_kinds"] = json.loads((SCALE / f"pool-{pool}.json").read_text())["kinds"] \
            if (SCALE / f"pool-{pool}.json").exists() else None
        harness.write_results(path, result, quiet=True)  # after every size: a crash keeps them
        print(json.dumps({k: row.get(k) for k in ("passages", "wall_s", "end_to_end_per_s",
                                                  "peak_rss_mb", "error")}), flush=True)
    table(result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
