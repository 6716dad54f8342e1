"""``vecpress server start | stop | status``: the local Prefect server CLI runs share.

``vecpress ingest`` starts it on first use (without PREFECT_API_URL, unless --no-server); these
commands start it ahead, show it, and stop it. It stops itself after ``server.idle_stop_s``
(VECPRESS_SERVER_IDLE_STOP_S, default an hour) without a command or a running flow.

Exit codes: 0 done; 2 an invalid setting; 3 it did not start (port taken, see its log).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from vecpress.cli.common import console, exit_with, local_server_settings

if TYPE_CHECKING:
    from vecpress.infra.local_prefect import LocalPrefectServer

server = typer.Typer(no_args_is_help=True, add_completion=False,
                     help="The local Prefect server (API and UI) that CLI runs share.")
Port = Annotated[int | None, typer.Option(help="Its port (default 4477, VECPRESS_SERVER_PORT).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the state as JSON.")]


@server.command("start")
def start(port: Port = None, as_json: AsJson = False) -> None:
    """Start the local server, or find the one running; print its UI address."""
    from vecpress.infra.local_prefect import LocalPrefectServer
    from vecpress.infra.prefect_server import PrefectServerError

    local = LocalPrefectServer(local_server_settings(port=port))
    try:
        local.ensure()
    except PrefectServerError as exc:
        exit_with(3, str(exc))
    _print(local, as_json)


@server.command("status")
def status(port: Port = None, as_json: AsJson = False) -> None:
    """Whether the local server runs: its UI address, process and idle time."""
    from vecpress.infra.local_prefect import LocalPrefectServer

    _print(LocalPrefectServer(local_server_settings(port=port)), as_json)


@server.command("stop")
def stop(port: Port = None) -> None:
    """Stop the local server (its database and run history stay for the next start)."""
    from vecpress.infra.local_prefect import LocalPrefectServer

    stopped = LocalPrefectServer(local_server_settings(port=port)).stop()
    console.print("stopped the local Prefect server" if stopped else "no local Prefect server ran")


def _print(local: LocalPrefectServer, as_json: bool) -> None:
    state = local.status()
    facts = {"running": state is not None, "home": str(local.home),
             "ui": state.ui_url if state else None, "api": state.api_url if state else None,
             "pid": state.pid if state else None, "python": state.python if state else None,
             "prefect": state.prefect if state else None,
             "idle_s": round(local.idle_s(), 1) if state else None,
             "idle_stop_s": local.settings.idle_stop_s}
    if as_json:
        typer.echo(json.dumps(facts))
    elif state is None:  # the answer to the command: standard output, as --json's
        typer.echo(f"no local Prefect server runs (home {local.home})")
    else:
        typer.echo(f"local Prefect server: {state.ui_url} (pid {state.pid}, Prefect "
                   f"{state.prefect or '?'}, up "
                   f"{time.time() - state.started:.0f} s, idle {facts['idle_s']:.0f} s of "
                   f"{local.settings.idle_stop_s:.0f} s; home {local.home})")
