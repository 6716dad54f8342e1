"""``vecpress serve``: a Prefect server, the three deployments' runner and the file watcher, locally.

Ctrl-C stops all three. With ``--api-url`` an existing Prefect server is used instead of starting
one (the tests do that, and so would a team with a shared Prefect).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vecpress.cli.common import (
    Collection,
    MilvusUri,
    StorageRoot,
    console,
    flat_settings,
    local_server_settings,
    quiet_libraries,
    settings_from_flags,
)
from vecpress.cli.interrupts import stop_on_sigint

if TYPE_CHECKING:
    from vecpress.infra.settings import ServeSettings, Settings


def serve(
    sources: Annotated[list[str] | None, typer.Argument(
        help="What the nightly ingest reads; also watched unless --watch is given.")] = None,
    collection: Collection = "vecpress",
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
    variant: Annotated[str | None, typer.Option(help="ONNX variant for the runs.")] = None,
    cron: Annotated[str | None, typer.Option(help="Schedule (default nightly: 0 2 * * *).")] = None,
    watch: Annotated[list[str] | None, typer.Option(
        help="Folder or fsspec URL to watch (repeatable; default: the sources).")] = None,
    no_watch: Annotated[bool, typer.Option("--no-watch", help="Run no watcher.")] = False,
    debounce: Annotated[float | None, typer.Option(help="Seconds of quiet before a burst of "
                                                        "file changes becomes one run.")] = None,
    api_url: Annotated[str | None, typer.Option(help="Use this Prefect API instead of starting a "
                                                     "server.")] = None,
    port: Annotated[int | None, typer.Option(help="Port of the Prefect server to start.")] = None,
) -> None:
    """Serve the nightly, manual and on-change deployments (and a Prefect server) until Ctrl-C.

    Exit codes: 0 stopped; 2 a usage or configuration error; 3 the Prefect server did not start.
    """
    quiet_libraries()
    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
                                      "storage_root": storage_root, "model.variant": variant})
    # Flow runs start in other processes: every local path they get must be absolute, and
    # resolved (the watcher tells the storage root's own writes from new inputs by path).
    settings.storage_root = _absolute(settings.storage_root)
    if settings.milvus.is_lite:
        settings.milvus.uri = _absolute(settings.milvus.uri)
    if settings.model.cache_dir:
        settings.model.cache_dir = _absolute(settings.model.cache_dir)
    overrides: dict[str, Any] = {"sources": [_absolute(s) for s in sources or []], "cron": cron,
                                 "watch": [_absolute(w) for w in watch or []],
                                 "debounce_s": debounce, "port": port}
    from vecpress.infra.settings import ServeSettings

    serve_settings = flat_settings(ServeSettings, "serve.", "VECPRESS_SERVE_",
                                   **{k: v for k, v in overrides.items() if v != []})
    if not serve_settings.sources:
        serve_settings.sources = [serve_settings.watched[0]] if serve_settings.watched else []

    server = None
    if api_url is None:
        from vecpress.infra.prefect_server import LocalPrefectServer, PrefectServerError

        server = LocalPrefectServer(serve_settings,
                                    templates=local_server_settings().templates_path)
        console.print(f"starting a Prefect server (database under {serve_settings.prefect_home}) …")
        try:
            api_url = server.start()
        except PrefectServerError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(3) from exc
    from vecpress.infra.prefect_server import using_api

    stop = threading.Event()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops as cleanly as Ctrl-C
    stop_on_sigint()
    try:
        # Prefect read its settings when it was imported: the URL goes into them as well as into
        # the environment of the flow runs this starts. Set in the environment alone, this
        # process registered the deployments on a temporary server of its own, and every run it
        # started crashed looking for itself on this one.
        with using_api(api_url):
            _run(settings, serve_settings, stop, no_watch, server.ui_url if server else api_url)
    except KeyboardInterrupt:
        console.print("stopping …")
    finally:
        stop.set()
        if server:
            server.stop()


def _run(settings: Settings, serve_settings: ServeSettings, stop: threading.Event, no_watch: bool,
         ui_url: str) -> None:
    from prefect import serve as prefect_serve

    from vecpress.deployments.definitions import build_deployments, deployment_names
    from vecpress.deployments.watcher import InputFilter, start_watchers

    if not no_watch and serve_settings.watched:
        _show_watcher_events()
        accept = InputFilter(settings.inputs, [settings.storage_root, serve_settings.prefect_home])
        start_watchers(settings.collection, serve_settings, accept, stop)
        console.print(f"watching {serve_settings.watched} for new, changed and deleted files")
    names = ", ".join(deployment_names(settings.collection).values())
    console.print(f"deployments: {names}\nPrefect UI: {ui_url}  (Ctrl-C stops everything)")
    prefect_serve(*build_deployments(settings, serve_settings), print_starting_message=False)


def _show_watcher_events() -> None:
    """Every event the watcher emits (and any it could not) is a line on serve's console."""
    import logging

    from rich.logging import RichHandler

    watcher = logging.getLogger("vecpress.watcher")
    watcher.setLevel(logging.INFO)
    watcher.addHandler(RichHandler(console=console, show_path=False))
    watcher.propagate = False


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def _absolute(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())
