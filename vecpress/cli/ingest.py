"""``vecpress ingest``: read, chunk, embed, compress and load sources into a Milvus collection."""

from __future__ import annotations

from typing import Annotated

import typer

from vecpress.cli.common import (
    Collection,
    MilvusUri,
    PartitionKey,
    StorageRoot,
    TypedFields,
    Verbose,
    print_summary,
    quiet_libraries,
    run_ingest,
    settings_from_flags,
    typed_fields,
)


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
    metadata_fields: Annotated[str | None, typer.Option(
        help="JSONL/Parquet fields kept as metadata, comma-separated, with file_bytes and "
        "file_modified (default: all but the id and text, and both; '' keeps none).")] = None,
    typed: TypedFields = None,
    partition_key: PartitionKey = None,
    eval_queries: Annotated[str | None, typer.Option(
        help="JSONL of held-out {id,text} queries: report recall@10 vs exact FP32.")] = None,
    recreate: Annotated[bool, typer.Option(help="Drop the collection and its codec first.")] = False,
    full: Annotated[bool, typer.Option(help="Read every file again, not only new and changed "
                                            "ones.")] = False,
    recall_target: Annotated[float | None, typer.Option(
        help="Auto-tune PCA dim and M for this recall@10 (new codecs only).")] = None,
    strict: Annotated[bool, typer.Option(help="Exit 1 if any input was skipped.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    no_server: Annotated[bool, typer.Option(
        "--no-server", help="Without PREFECT_API_URL, report to a temporary Prefect API that "
        "lives as long as this command, not the shared local server (vecpress server).")] = False,
    verbose: Verbose = False,
) -> None:
    """Read, chunk, embed, compress and load SOURCES into a Milvus collection.

    Exit codes: 0 done; 1 --strict and some record was skipped (see the run's
    quarantine.jsonl); 2 a usage or configuration error, or no usable input;
    3 infrastructure unavailable (storage full, Milvus, Prefect or Dask down):
    fix it and run the same command again to resume; 130 interrupted (Ctrl-C):
    run the same command again to resume.
    """
    quiet_libraries()
    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
                                      "dask.address": dask_address, "storage_root": storage_root,
                                      "model.variant": variant, "model.path": model,
                                      "inputs.id_field": id_field, "inputs.text_field": text_field,
                                      "inputs.metadata_fields": None if metadata_fields is None
                                      else [f.strip() for f in metadata_fields.split(",")
                                            if f.strip()],
                                      "metadata.fields": typed_fields(typed),
                                      "metadata.partition_key": partition_key,
                                      "codec.recall_target": recall_target})
    summary = run_ingest(sources, settings, eval_queries, recreate, full, no_server, verbose)
    print_summary(summary, as_json)
    if strict and summary.errors:
        raise typer.Exit(1)
