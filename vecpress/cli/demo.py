"""``vecpress demo``: the main job on embedded defaults, the stdlib docstring corpus into Milvus Lite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vecpress.cli.common import (
    MilvusUri,
    StorageRoot,
    Verbose,
    console,
    machine,
    print_hits,
    print_summary,
    quiet_libraries,
    run_ingest,
    settings_from_flags,
)


def demo(
    queries: Annotated[int, typer.Option(help="Paragraphs held out as evaluation queries.")] = 200,
    storage_root: StorageRoot = None,
    milvus_uri: MilvusUri = None,
    summary_out: Annotated[Path | None, typer.Option(help="Also write the run summary JSON here.")] = None,
    verbose: Verbose = False,
) -> None:
    """The main job on embedded defaults: the stdlib docstring corpus into Milvus Lite."""
    quiet_libraries()
    from vecpress.tasks.inputs.corpus import write_demo_corpus
    from vecpress.tasks.search.opening import open_searcher

    settings = settings_from_flags(**{"collection": "demo", "storage_root": storage_root,
                                      "milvus.uri": milvus_uri})
    corpus, held_out, size = write_demo_corpus(str(Path(settings.storage_root) / "demo"),
                                               n_queries=queries)
    console.print(f"demo corpus: {size:,} docstring paragraphs of this Python's standard library "
                  f"→ {corpus} ({queries} held out as queries)")
    summary = run_ingest([corpus], settings, held_out, recreate=True, verbose=verbose)
    print_summary(summary, as_json=False)
    if summary_out is not None:
        summary_out.parent.mkdir(parents=True, exist_ok=True)
        summary_out.write_text(json.dumps(summary.to_dict() | {"machine": machine()}, indent=2, default=str))
    searcher = open_searcher(settings)
    example = "how do I read a file line by line"
    print_hits(Console(), example, searcher.search([example], 5)[0])
    searcher.store.close()
