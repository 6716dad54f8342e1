"""``vecpress embed``: one normalised vector per input record, written to a file (no Milvus)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from vecpress.cli.common import (
    StorageRoot,
    console,
    exit_with,
    quiet_libraries,
    settings_from_flags,
)


def embed(
    inputs: Annotated[list[str], typer.Argument(help="Files, directories or fsspec URLs.")],
    out: Annotated[Path, typer.Option(help="Output .parquet (id, embedding) or .npy (+ .ids.txt).")],
    variant: Annotated[str | None, typer.Option(help="fp32 | int8 (CPU) | fp16 (CUDA, else CPU).")] = None,
    model: Annotated[str | None, typer.Option(help="Local sentence-transformers model dir.")] = None,
    id_field: Annotated[str | None, typer.Option(help="JSONL/Parquet id field.")] = None,
    text_field: Annotated[str | None, typer.Option(help="JSONL/Parquet text field.")] = None,
    storage_root: StorageRoot = None,
) -> None:
    """Embed every input record (no chunking, no Milvus): one normalised vector per record, in order.

    Exit codes: 0 done (each bad record is reported and skipped); 2 a usage or configuration
    error (an unsupported --out file type, refused before any work; a --model folder that holds
    no model), or no usable record (then no file is written).
    """
    quiet_libraries()
    from rich.progress import Progress

    from vecpress.tasks.embed.embedder import OnnxEmbedder
    from vecpress.tasks.embed.export import ExportError, export_for_settings
    from vecpress.tasks.embed.files import check_output, embed_records, write_vectors
    from vecpress.tasks.embed.model_files import ModelDirError
    from vecpress.tasks.inputs.records import InputError
    from vecpress.tasks.inputs.sources import discover, read_records, sample_texts

    try:
        check_output(out)
    except ValueError as exc:
        exit_with(2, str(exc))
    settings = settings_from_flags(**{"storage_root": storage_root, "model.variant": variant,
                                      "model.path": model, "inputs.id_field": id_field,
                                      "inputs.text_field": text_field})
    try:  # a wrong --model is a usage error, as in export-model: one line, not a traceback
        artifact = export_for_settings(settings.model, settings.model_cache_dir,
                                       lambda: sample_texts(inputs, settings.inputs))
    except (ModelDirError, ExportError) as exc:
        exit_with(2, str(exc))
    embedder = OnnxEmbedder(artifact, settings.model, threads=os.cpu_count() or 1)
    files, errors = discover(inputs, settings.inputs)

    def records() -> Iterator[Any]:
        for src in files:
            for item in read_records(src, settings.inputs):
                if isinstance(item, InputError):
                    errors.append(item)
                else:
                    yield item

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("embed", total=None)
        ids, vectors = embed_records(records(), embedder, lambda n: bar.advance(task, n))
    for err in errors:
        console.print(f"[red]input error[/red] {err}")
    if not ids:  # as ingest's "no usable input": an empty file would pass for a result
        exit_with(2, f"nothing to embed from {inputs}: {len(errors)} input error(s)"
                  + (f", first: {errors[0]}" if errors else "") + "; no file was written")
    written = write_vectors(out, ids, vectors)
    console.print(f"{len(ids):,} embeddings ({artifact.variant}, {vectors.shape[1]}-d, "
                  f"{embedder.truncated} truncated to {artifact.max_seq_length} tokens) → "
                  + ", ".join(map(str, written)))
