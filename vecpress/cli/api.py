"""``vecpress api``: serve collections' search over HTTP (FastAPI + uvicorn) until stopped.

Exit codes: 0 stopped (Ctrl-C or SIGTERM: connections close, requests in flight get up to
``api.shutdown_s`` to finish); 2 a usage or configuration error (no such collection, model cache,
Milvus URI or key file; a non-local address without keys); 3 Milvus unavailable (also a Milvus
Lite file held by another process).
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vecpress.cli.common import (
    MilvusUri,
    StorageRoot,
    console,
    exit_with,
    fail_if_milvus,
    flat_settings,
    open_for_search,
    quiet_libraries,
    settings_from_flags,
)

if TYPE_CHECKING:
    from vecpress.infra.search_settings import ApiSettings
    from vecpress.infra.settings import Settings

Collections = Annotated[list[str] | None, typer.Option(
    "--collection", "-c", help="A collection to serve; repeat for several (default: vecpress).")]


def api(
    collection: Collections = None,
    all_collections: Annotated[bool, typer.Option(
        "--all-collections", help="Serve every collection under the storage root.")] = False,
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (127.0.0.1; another "
                                                  "needs API keys or --insecure).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (8000).")] = None,
    api_key_file: Annotated[Path | None, typer.Option(
        help="File of API keys, one per line; clients send 'Authorization: Bearer KEY'.")] = None,
    api_key_secret: Annotated[str | None, typer.Option(
        help="Name of a Prefect Secret block holding the API keys.")] = None,
    insecure: Annotated[bool, typer.Option(
        help="Serve without API keys on a non-local address.")] = False,
) -> None:
    """Serve POST /collections/{name}/search, POST /search (the first collection) and GET
    /collections/{name} (OpenAPI page at /docs; /healthz, /readyz) until Ctrl-C or SIGTERM.

    Exit codes: 0 stopped, 2 usage or configuration error, 3 Milvus unavailable or in use.
    """
    import uvicorn

    from vecpress.infra.search_settings import check_consistent
    from vecpress.tasks.collection.home import collection_names
    from vecpress.web import KeyCheck, Served, create_app
    from vecpress.web.keys import KeySourceError, load_keys

    quiet_libraries()
    settings = settings_from_flags(**{"milvus.uri": milvus_uri, "storage_root": storage_root})
    served_api = _api_settings(host=host, port=port, insecure=insecure or None,
                               key_file=str(api_key_file) if api_key_file else None,
                               key_secret=api_key_secret)
    try:
        keys = KeyCheck(load_keys(served_api))
    except KeySourceError as exc:
        exit_with(2, str(exc))
    names = collection_names(settings.storage_root) if all_collections else (
        collection or [settings.collection])
    if not names:
        exit_with(2, f"no collection under {settings.storage_root}; ingest first, or give "
                     "--storage-root")
    each = {name: settings_from_flags(**{"collection": name, "milvus.uri": milvus_uri,
                                         "storage_root": storage_root}) for name in names}
    try:
        for one in each.values():
            check_consistent(served_api, one.search)
    except ValueError as exc:
        exit_with(2, str(exc))
    served = Served(names, lambda name: open_for_search(each[name]), served_api)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            super().handle_exit(sig, frame)
            served.stop_soon()  # requests still queued get 503 now, not a cancellation later

    server = Server(uvicorn.Config(
        create_app(served, keys), host=served_api.host, port=served_api.port,
        log_level="warning", access_log=False, limit_concurrency=served_api.max_connections,
        timeout_graceful_shutdown=served_api.shutdown_s))
    served.on_error = lambda: setattr(server, "should_exit", True)
    for sig in (signal.SIGINT, signal.SIGTERM):  # uvicorn re-raises the signal it stopped on
        signal.signal(sig, lambda *_: None)
    console.print(f"serving {', '.join(names)} at http://{served_api.host}:{served_api.port} "
                  f"({'API keys required' if keys.enabled else 'no API keys'}; OpenAPI: /docs)")
    try:
        server.run()
    except SystemExit:  # uvicorn could not bind (it logged why)
        pass
    finally:
        served.close()
    _exit_for(served.error, settings)
    if not server.started:
        exit_with(3, f"could not listen on {served_api.host}:{served_api.port} (in use?); give "
                     "another --port")


def _api_settings(**flags: Any) -> ApiSettings:
    from vecpress.infra.search_settings import ApiSettings

    return flat_settings(ApiSettings, "api.", "VECPRESS_API_", **flags)


def _exit_for(error: BaseException | None, settings: Settings) -> None:
    """The loading error of a collection, as the command's exit (its message was printed by
    ``open_for_search`` when it is a ``typer.Exit``)."""
    if error is None:
        return
    if isinstance(error, typer.Exit | SystemExit):
        raise error
    if isinstance(error, Exception):
        fail_if_milvus(error, settings)
    raise error
