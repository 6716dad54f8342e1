"""The ``vecpress`` command line: ingest, search and the demo, all driven by one ``Settings``.

This module only builds the typer ``app`` and registers the commands, each of which lives in its
own module and shares helpers through ``vecpress.cli.common``. ``vecpress.cli:app`` is the console
entry point.
"""

from __future__ import annotations

import gc

import typer

from vecpress.cli import api, demo, embed, export_model, ingest, reindex, search, serve, server

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Text → ONNX embeddings → PCA + PQ → Milvus, orchestrated by Prefect + Dask.")

app.command("ingest")(ingest.ingest)
app.command("search")(search.search)
app.command("export-model")(export_model.export_model_cmd)
app.command("embed")(embed.embed)
app.command("demo")(demo.demo)
app.command("reindex")(reindex.reindex)
app.command("serve")(serve.serve)
app.command("api")(api.api)
app.add_typer(server.server, name="server")


def main() -> None:
    """The console entry point: the command, then the interpreter's exit without its garbage
    collector's passes over every object a command leaves (Prefect, Dask, pydantic, pymilvus):
    those took 0.8 of the last 0.9 s of a 100k-passage ingest. Frozen objects are still released
    as the interpreter ends, only not searched for cycles (benchmarks/ingest_timeline.py)."""
    try:
        app()
    finally:
        gc.freeze()
