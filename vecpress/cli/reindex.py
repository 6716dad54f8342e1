"""``vecpress reindex``: rebuild a Milvus collection from the Parquet archive, without re-embedding."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from vecpress.cli.common import (
    MilvusUri,
    PartitionKey,
    StorageRoot,
    TypedFields,
    console,
    exit_milvus_failed,
    quiet_libraries,
    settings_from_flags,
    typed_fields,
)


def reindex(
    from_archive: Annotated[str, typer.Option(
        "--from-archive", help="A collection dir (<root>/collections/NAME): its live archived "
        "passages are loaded.")],
    collection: Annotated[str, typer.Option("--collection", "-c", help="The collection to (re)build.")],
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
    typed: TypedFields = None,
    partition_key: PartitionKey = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Load archived vectors + passage text into a new build of a collection, index it, switch
    the name over when it is complete.

    Exit codes: 0 done; 2 a usage or configuration error; 3 Milvus unavailable.
    """
    quiet_libraries()
    from pymilvus import MilvusException

    from vecpress.infra.milvus import MilvusSchemaError
    from vecpress.tasks.collection.loading import ShardMismatchError
    from vecpress.tasks.collection.reindex import ReindexError
    from vecpress.tasks.collection.reindex import reindex as run_reindex
    from vecpress.tasks.collection.typed_columns import TypedValueError
    from vecpress.tasks.report.summary import index_text

    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
                                      "storage_root": storage_root,
                                      "metadata.fields": typed_fields(typed),
                                      "metadata.partition_key": partition_key})
    from vecpress.infra.locks import collection_lock

    try:
        # One writer per collection: an ingest of the same collection waits (and vice versa).
        with collection_lock(settings.storage_root, settings.collection,
                             lease_ttl_s=settings.lease_ttl_s):
            summary = run_reindex(from_archive, settings).to_dict()
    except (ReindexError, MilvusSchemaError, ShardMismatchError, TypedValueError,
            FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except MilvusException as exc:
        exit_milvus_failed(exc, settings.milvus.uri, "check that it is up, then run again")
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    table = Table(title=f"reindex {summary['source']} → collection '{summary['collection']}'",
                  show_header=False)
    for key in ("milvus_uri", "build", "codec_id", "shards", "rows_written", "rows_in_milvus"):
        table.add_row(key, str(summary[key]))
    table.add_row("index", index_text(summary["index"]))
    table.add_row("seconds", f"{summary['seconds']:.1f}")
    Console().print(table)
