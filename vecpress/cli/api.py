"""``vecpress api``: serve one collection's search over HTTP (FastAPI + uvicorn) until Ctrl-C.

Exit codes: 0 stopped; 2 a usage or configuration error (no such collection, model cache or
Milvus URI); 3 Milvus unavailable (also a Milvus Lite file held by another process).
"""

from __future__ import annotations

from typing import Annotated

import typer

from vecpress.cli.common import (
    Collection,
    MilvusUri,
    StorageRoot,
    console,
    open_for_search,
    quiet_libraries,
    settings_from_flags,
)


def api(
    collection: Collection = "vecpress",
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve POST /search and GET /collections/{name} (OpenAPI page at /docs) until Ctrl-C.

    Exit codes: 0 stopped, 2 usage or configuration error, 3 Milvus unavailable or in use.
    """
    import uvicorn

    from vecpress.web import create_app

    quiet_libraries()
    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
                                      "storage_root": storage_root})
    opened = open_for_search(settings)
    try:
        console.print(f"serving '{opened.name}' at http://{host}:{port} (OpenAPI: /docs)")
        uvicorn.run(create_app(opened), host=host, port=port, log_level="warning")
    finally:
        opened.close()
