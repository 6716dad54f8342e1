"""The ``vecpress`` command line: ingest, search and the demo, all driven by one ``Settings``.

This module only builds the typer ``app`` and registers the commands, each of which lives in its
own module and shares helpers through ``vecpress.cli.common``. ``vecpress.cli:app`` is the console
entry point.
"""

from __future__ import annotations

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


def main() -> None:  # pragma: no cover - console entry point
    app()
