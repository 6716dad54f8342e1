"""The local Prefect server CLI commands share: it outlives the command that started it.

A command without ``PREFECT_API_URL`` used to start a temporary API and wait for it (a one-file
ingest took 29.04 s that way, 13.32 s with this server up: results/commands_cpu_2core.json), and
the run link it printed was dead once it exited. This server stays up (API and UI on a stable
port, its SQLite database under ``server.home``), so the next command starts at once, links open
in a browser afterwards, and the UI holds the history of CLI runs.

It runs under a small watcher (``infra.local_prefect_watch``) in a session of its own: the watcher
stops it after ``server.idle_stop_s`` without a command or a running flow, and exits when it dies.
``state.json`` names the watcher; a server that died is noticed (no live watcher, or no answer)
and started again. Two commands starting at the same moment take ``server.lock`` in turn: the
second finds the first one's server and starts none.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from filelock import FileLock

from vecpress.infra import prefect_db
from vecpress.infra.local_prefect_watch import flows_active
from vecpress.infra.prefect_server import (
    PrefectServerError,
    configured_api_url,
    is_healthy,
    temporary_prefect_api,
    using_api,
    wait_for_health,
)
from vecpress.infra.settings import LocalServerSettings

STOP_WAIT_S = 20.0
# A server of another Prefect version is replaced only once unused this long: a command that has
# just been given its address may not have created its flow run yet.
REPLACE_IDLE_S = 30.0
log = logging.getLogger(__name__)


def prefect_version() -> str:
    """The installed Prefect's version (the server a command starts runs this one)."""
    from importlib.metadata import version

    return version("prefect")


@dataclass(frozen=True)
class ServerState:
    pid: int  # the watcher's, also its process group's
    port: int
    started: float  # time.time()
    python: str = ""  # the interpreter that started it: its install ("" from before stop 52)
    # The Prefect version it runs ("" from before stop 53). Kept in its own file beside
    # state.json: installs of stop 52 and before read state.json with these fields only.
    prefect: str = ""

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.ui_url}/api"


class LocalPrefectServer:
    """Start, find, use and stop the shared local server of ``settings``."""

    def __init__(self, settings: LocalServerSettings) -> None:
        self.settings = settings
        self.home = settings.home_path
        self.state_path = self.home / "state.json"
        self.version_path = self.home / "prefect_version"
        self.log_path = self.home / "server.log"
        self.used_path = self.home / "last_used"

    @property
    def api_url(self) -> str:
        """Where the server of these settings answers (``status`` gives a running one's)."""
        return f"http://127.0.0.1:{self.settings.port}/api"

    def status(self) -> ServerState | None:
        """The running server's state; None when none runs (or it no longer answers)."""
        state = self._read_state()
        if state is None or not _alive(state.pid) or not is_healthy(state.api_url):
            return None
        return state

    def ensure(self) -> str:
        """The server's API URL, starting it when none runs; marks it used."""
        self.home.mkdir(parents=True, exist_ok=True)
        with FileLock(self.home / "server.lock", timeout=self.settings.startup_s + 30):
            state = self.status()
            if state is not None and self._replaceable(state):
                _stop_group(state.pid)
                self.state_path.unlink(missing_ok=True)
                state = None
            if state is None:
                state = self._start()
            self.touch()
            return state.api_url

    def _replaceable(self, state: ServerState) -> bool:
        """Whether a running server makes way for one of this install: it was started by an
        install since removed (a deleted checkout or virtualenv), which answers until a request
        imports a module lazily and then fails runs midway; or it runs another Prefect version
        (an upgrade, another virtualenv), whose API this install's client may not match, and no
        flow run is pending or running on it (a busy one is used, with a warning, until idle)."""
        if state.python and not Path(state.python).exists():
            return True
        if not state.prefect or state.prefect == (ours := prefect_version()):
            return False
        if self.idle_s() > REPLACE_IDLE_S and not flows_active(state.port):
            return True
        log.warning("the local Prefect server runs Prefect %s and this install has %s; a run "
                    "may be using it, so it is used as it is and replaced once idle (or run "
                    "`vecpress server stop` between runs)", state.prefect, ours)
        return False

    def idle_s(self) -> float:
        """Seconds since a command last used the server."""
        try:
            return time.time() - self.used_path.stat().st_mtime
        except OSError:
            return 0.0

    def touch(self) -> None:
        """Mark the server used now: its idle time starts again."""
        self.used_path.touch()

    def stop(self) -> bool:
        """Stop the server (watcher and uvicorn, one process group); whether one was running."""
        self.home.mkdir(parents=True, exist_ok=True)
        with FileLock(self.home / "server.lock", timeout=STOP_WAIT_S + 30):
            state = self._read_state()
            running = state is not None and _alive(state.pid)
            if state is not None and running:
                _stop_group(state.pid)
            self.state_path.unlink(missing_ok=True)
            return running

    def _start(self) -> ServerState:
        if is_healthy(self.api_url):
            raise PrefectServerError(
                f"another server answers on port {self.settings.port} and it is not vecpress's "
                f"local server ({self.state_path} names none); stop it, or set "
                "VECPRESS_SERVER_PORT to a free port (or PREFECT_API_URL to use that server)")
        env = {k: v for k, v in os.environ.items()
               if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
        self.touch()
        # The watcher's uvicorn keeps its SQLite file here.
        ready = prefect_db.seed(self.home / prefect_db.DB_NAME, self.settings.templates_path)
        with self.log_path.open("ab") as log:
            watcher = subprocess.Popen(
                [sys.executable, "-m", "vecpress.infra.local_prefect_watch", str(self.home),
                 str(self.settings.port), str(self.settings.idle_stop_s)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # outlives this command, and its Ctrl-C
        state = ServerState(watcher.pid, self.settings.port, time.time(), sys.executable,
                            prefect_version())
        # Written before it answers: the watcher, which removes it when it stops the server
        # itself, must never find it missing and then have it written after it stopped.
        self.version_path.write_text(f"{state.prefect} {state.pid}")  # whose version it is
        self.state_path.write_text(json.dumps({k: v for k, v in asdict(state).items()
                                               if k != "prefect"}))
        if not wait_for_health(state.api_url, self.settings.startup_s, process=watcher,
                               interval_s=0.25):
            if watcher.poll() is None:
                _stop_group(watcher.pid)
            self.state_path.unlink(missing_ok=True)
            raise PrefectServerError(
                f"the local Prefect server did not answer on port {self.settings.port} within "
                f"{self.settings.startup_s:.0f} s; see {self.log_path}")
        ready()
        return state

    def _read_state(self) -> ServerState | None:
        """The state file's server (fields a later install added are ignored), or None."""
        try:
            saved = json.loads(self.state_path.read_text())
            known = {f.name for f in fields(ServerState)} - {"prefect"}
            state = ServerState(**{k: v for k, v in saved.items() if k in known})
        except (OSError, ValueError, TypeError, AttributeError):
            return None
        try:
            version, pid = self.version_path.read_text().split()
        except (OSError, ValueError):
            return state
        return replace(state, prefect=version) if pid == str(state.pid) else state


@contextmanager
def prefect_api(local: LocalServerSettings, startup_timeout_s: float, start: bool = True
                ) -> Iterator[str]:
    """The Prefect API a run reports to: PREFECT_API_URL (or the Prefect profile) when set; else
    the shared local server (``local.auto_start``), started on first use unless ``start`` is
    False (the Python API uses it only when it is up); else a temporary API that lives as long as
    the command (``startup_timeout_s``: how long it may take to answer)."""
    server = LocalPrefectServer(local)
    if configured_api_url() or not local.auto_start or (not start and server.status() is None):
        with temporary_prefect_api(startup_timeout_s, local.templates_path) as url:
            yield url
        return
    url = server.ensure()
    try:
        with using_api(url):
            yield url
    finally:
        server.touch()  # its idle time counts from the end of the run


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def _stop_group(pid: int) -> None:
    """SIGTERM to the watcher's group (it stops uvicorn), then SIGKILL after ``STOP_WAIT_S``."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


@contextmanager
def without_flow_heartbeats() -> Iterator[None]:
    """No flow-run heartbeats from a run in this process (a command's, or the Python API's),
    unless Prefect's own settings ask for them (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, or a profile).
    They only feed a zombie-run automation a user creates, and a flow's end waits for the
    heartbeat thread, which sleeps in 1 s steps: up to 1 s of every run (0.85 s a one-file
    ingest, measured)."""
    from prefect.settings import get_current_settings, temporary_settings

    if "heartbeat_frequency" in get_current_settings().flows.model_fields_set:
        yield
        return
    with temporary_settings(updates={"flows.heartbeat_frequency": None}):
        yield
