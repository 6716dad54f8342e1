"""The ``vecpress`` command line: ingest, search and the demo, all driven by one ``Settings``."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from vecpress.infra.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Text → ONNX embeddings → PCA + PQ → Milvus, orchestrated by Prefect + Dask.")
console = Console(stderr=True)

Collection = Annotated[str, typer.Option("--collection", "-c", help="Milvus collection name.")]
MilvusUri = Annotated[str | None, typer.Option(help="Milvus Lite .db file or server URI "
                                                     "(default ./data/milvus.db).")]
StorageRoot = Annotated[str | None, typer.Option(help="Where runs, codecs and the model cache "
                                                         "live (default ./data).")]


def _settings(**overrides: Any) -> Settings:
    """Settings from VECPRESS_* environment variables, overridden by the given CLI flags."""
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return Settings(**nested)


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is contacted, ever
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for name in ("distributed", "httpx", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, directories or fsspec URLs.")],
    collection: Collection = "vecpress",
    milvus_uri: MilvusUri = None,
    dask_address: Annotated[str | None, typer.Option(help="Existing Dask scheduler.")] = None,
    storage_root: StorageRoot = None,
    variant: Annotated[str | None, typer.Option(
        help="ONNX variant: fp32 | int8 (CPU) | fp16 (CUDA, else CPU).")] = None,
    model: Annotated[str | None, typer.Option(help="Local sentence-transformers model dir.")] = None,
    id_field: Annotated[str | None, typer.Option(help="JSONL/Parquet id field.")] = None,
    text_field: Annotated[str | None, typer.Option(help="JSONL/Parquet text field.")] = None,
    eval_queries: Annotated[str | None, typer.Option(
        help="JSONL of held-out {id,text} queries: report recall@10 vs exact FP32.")] = None,
    recreate: Annotated[bool, typer.Option(help="Drop the collection and its codec first.")] = False,
    full: Annotated[bool, typer.Option(help="Read every file again, not only new and changed "
                                            "ones.")] = False,
    recall_target: Annotated[float | None, typer.Option(
        help="Auto-tune PCA dim and M for this recall@10 (new codecs only).")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any input was skipped.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Read, chunk, embed, compress and load SOURCES into a Milvus collection."""
    _quiet_libraries()
    settings = _settings(**{"collection": collection, "milvus.uri": milvus_uri,
                            "dask.address": dask_address, "storage_root": storage_root,
                            "model.variant": variant, "model.path": model,
                            "inputs.id_field": id_field, "inputs.text_field": text_field,
                            "codec.recall_target": recall_target})
    summary = _run_ingest(sources, settings, eval_queries, recreate, full)
    _print_summary(summary, as_json)
    if strict and summary["errors"]:
        raise typer.Exit(1)


def _run_ingest(sources: list[str], settings: Settings, eval_queries: str | None,
                recreate: bool, full: bool = False) -> dict:
    from vecpress.flows.ingest import ingest_flow

    try:
        return ingest_flow(sources=sources, settings=settings, eval_queries=eval_queries,
                           recreate=recreate, full=full)
    except (ValueError, LookupError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    from vecpress.tasks.report import IngestSummary, StageStat, render

    data = dict(summary)
    data["stages"] = [StageStat(s["stage"], s["seconds"], s["items"], s["unit"])
                      for s in data["stages"]]
    render(IngestSummary(**data), Console())


@app.command()
def search(
    query: Annotated[str | None, typer.Argument(help="Query text.")] = None,
    collection: Collection = "vecpress",
    k: Annotated[int, typer.Option("-k", help="Results per query.")] = 10,
    queries: Annotated[Path | None, typer.Option(help="JSONL of {id,text} queries.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per query.")] = False,
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
) -> None:
    """Search a collection: ANN over compressed vectors, rescored with archived vectors."""
    _quiet_libraries()
    from vecpress.tasks.search import CollectionNotFoundError, open_searcher

    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a QUERY or --queries FILE")
    settings = _settings(**{"collection": collection, "milvus.uri": milvus_uri,
                            "storage_root": storage_root})
    items = [("query", query)] if query is not None else _read_queries(queries)
    try:
        searcher = open_searcher(settings)
    except CollectionNotFoundError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    out = Console()
    for start in range(0, len(items), 256):
        batch = items[start : start + 256]
        for (qid, text), hits in zip(batch, searcher.search([t for _, t in batch], k),
                                     strict=True):
            if as_json:
                sys.stdout.write(json.dumps({"id": qid, "results": [
                    {"rank": r, "doc_id": h.doc_id, "chunk": h.chunk, "pk": h.pk,
                     "score": round(h.score, 6)} for r, h in enumerate(hits, 1)]}) + "\n")
            else:
                _print_hits(out, text, hits)
    searcher.store.close()


def _read_queries(path: Path) -> list[tuple[str, str]]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            items.append((str(obj.get("id", number)), str(obj["text"])))
        except (json.JSONDecodeError, KeyError, AttributeError) as exc:
            raise typer.BadParameter(f"{path}:{number}: expected {{\"id\", \"text\"}} JSON "
                                     f"({exc})") from exc
    return items


def _print_hits(out: Console, text: str, hits: list) -> None:
    from rich.table import Table

    table = Table(title=f"query: {text}", title_justify="left")
    for col in ("#", "score", "doc id", "chunk", "text"):
        table.add_column(col, overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        snippet = hit.text if len(hit.text) <= 160 else hit.text[:157] + "…"
        table.add_row(str(rank), f"{hit.score:.3f}", hit.doc_id, str(hit.chunk), snippet)
    out.print(table)


@app.command("export-model")
def export_model_cmd(
    model_dir: Annotated[str, typer.Argument(help="Local sentence-transformers model directory.")],
    variant: Annotated[str, typer.Option(
        help="fp32 (exact), int8 (dynamic, per-channel) or fp16 (for CUDA).")] = "fp32",
    cache_dir: Annotated[Path, typer.Option(help="Where exported artifacts are cached.")] = Path(
        "data/models"),
    min_cosine: Annotated[float | None, typer.Option(
        help="Fidelity floor (min cosine vs sentence-transformers); default 0.999 fp32/fp16, 0.97 int8."
    )] = None,
) -> None:
    """Export a model to ONNX (pooling + normalisation in the graph), check it, cache it."""
    _quiet_libraries()
    from vecpress.tasks.corpus import probe_passages
    from vecpress.tasks.model_files import ModelDirError, read_model_spec, resolve_model_dir
    from vecpress.tasks.onnx_export import ExportError, export_model

    try:
        spec = read_model_spec(resolve_model_dir(model_dir))
        artifact = export_model(spec, variant, cache_dir, probe_passages, min_cosine)
    except (ModelDirError, ExportError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    Console().print(f"{artifact.onnx_path}\n  variant {artifact.variant}, window "
                    f"{artifact.max_seq_length} tokens, {artifact.dim}-d; vs sentence-transformers on "
                    f"{artifact.probes} real passages: min cosine {artifact.min_cosine:.5f}, mean "
                    f"{artifact.mean_cosine:.5f}, neighbour recall@10 "
                    f"{artifact.neighbour_recall_at_10:.3f} (on {artifact.checked_on})\n"
                    f"  fusion: {artifact.fusion}")


@app.command()
def embed(
    inputs: Annotated[list[str], typer.Argument(help="Files, directories or fsspec URLs.")],
    out: Annotated[Path, typer.Option(help="Output .parquet (id, embedding) or .npy (+ .ids.txt).")],
    variant: Annotated[str | None, typer.Option(help="fp32 | int8 (CPU) | fp16 (CUDA, else CPU).")] = None,
    model: Annotated[str | None, typer.Option(help="Local sentence-transformers model dir.")] = None,
    id_field: Annotated[str | None, typer.Option(help="JSONL/Parquet id field.")] = None,
    text_field: Annotated[str | None, typer.Option(help="JSONL/Parquet text field.")] = None,
    storage_root: StorageRoot = None,
) -> None:
    """Embed every input record (no chunking, no Milvus): one normalised vector per record, in order."""
    _quiet_libraries()
    from rich.progress import Progress

    from vecpress.tasks.embed_files import embed_records, write_vectors
    from vecpress.tasks.embedding import OnnxEmbedder
    from vecpress.tasks.onnx_export import export_for_settings
    from vecpress.tasks.records import InputError
    from vecpress.tasks.sources import discover, read_records

    settings = _settings(**{"storage_root": storage_root, "model.variant": variant,
                            "model.path": model, "inputs.id_field": id_field,
                            "inputs.text_field": text_field})
    artifact = export_for_settings(settings.model, settings.model_cache_dir)
    embedder = OnnxEmbedder.from_settings(artifact, settings.model, threads=os.cpu_count() or 1)
    files, errors = discover(inputs, settings.inputs)

    def records():
        for src in files:
            for item in read_records(src, settings.inputs):
                if isinstance(item, InputError):
                    errors.append(item)
                else:
                    yield item

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("embed", total=None)
        ids, vectors = embed_records(records(), embedder, lambda n: bar.advance(task, n))
    written = write_vectors(out, ids, vectors)
    for err in errors:
        console.print(f"[red]input error[/red] {err}")
    console.print(f"{len(ids):,} embeddings ({artifact.variant}, {vectors.shape[1]}-d, "
                  f"{embedder.truncated} truncated to {artifact.max_seq_length} tokens) → "
                  + ", ".join(map(str, written)))


@app.command()
def demo(
    queries: Annotated[int, typer.Option(help="Paragraphs held out as evaluation queries.")] = 200,
    storage_root: StorageRoot = None,
    milvus_uri: MilvusUri = None,
    summary_out: Annotated[Path | None, typer.Option(help="Also write the run summary JSON here.")] = None,
) -> None:
    """The main job on embedded defaults: the stdlib docstring corpus into Milvus Lite."""
    _quiet_libraries()
    from vecpress.tasks.corpus import write_demo_corpus
    from vecpress.tasks.search import open_searcher

    settings = _settings(**{"collection": "demo", "storage_root": storage_root,
                            "milvus.uri": milvus_uri})
    corpus, held_out, size = write_demo_corpus(str(Path(settings.storage_root) / "demo"),
                                               n_queries=queries)
    console.print(f"demo corpus: {size:,} docstring paragraphs of this Python's standard library "
                  f"→ {corpus} ({queries} held out as queries)")
    summary = _run_ingest([corpus], settings, held_out, recreate=True)
    _print_summary(summary, as_json=False)
    if summary_out is not None:
        summary_out.parent.mkdir(parents=True, exist_ok=True)
        summary_out.write_text(json.dumps(summary | {"machine": _machine()}, indent=2, default=str))
    searcher = open_searcher(settings)
    example = "how do I read a file line by line"
    _print_hits(Console(), example, searcher.search([example], 5)[0])
    searcher.store.close()


def _machine() -> dict[str, Any]:
    import platform

    import onnxruntime
    import pymilvus

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "onnxruntime": onnxruntime.__version__,
            "pymilvus": pymilvus.__version__}


def main() -> None:  # pragma: no cover - console entry point
    app()


# Commands kept in their own modules register themselves on `app` when imported.
from vecpress import cli_reindex, cli_serve  # noqa: E402, F401
