"""``vecpress search``: ANN over a collection's compressed vectors, rescored with archived ones."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vecpress.cli.common import (
    Collection,
    MilvusUri,
    StorageRoot,
    console,
    print_hits,
    quiet_libraries,
    settings_from_flags,
)


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
    quiet_libraries()
    from vecpress.tasks.search.searcher import CollectionNotFoundError, open_searcher

    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a QUERY or --queries FILE")
    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
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
                print_hits(out, text, hits)
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
