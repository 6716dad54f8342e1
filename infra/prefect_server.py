"""Prefect servers run as child processes: one for `vecpress serve`, a temporary one per command.

``LocalPrefectServer`` keeps its database under ``serve.prefect_home``; ``temporary_prefect_api``
gives a one-off command (``vecpress ingest``) an API that dies with it, instead of Prefect's own
ephemeral server.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from vecpress.infra import prefect_db
from vecpress.infra.settings import ServeSettings


class PrefectServerError(RuntimeError):
    """The Prefect server did not come up."""


class LocalPrefectServer:
    """``prefect server start`` on SQLite under ``serve.prefect_home``."""

    def __init__(self, serve: ServeSettings, startup_timeout_s: float = 180,
                 templates: Path | None = None) -> None:
        self.serve = serve
        self.timeout = startup_timeout_s
        self.templates = templates  # a migrated database to start a new home from (prefect_db)
        self.process: subprocess.Popen | None = None
        self.log_path = Path(serve.prefect_home) / "server.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.serve.host}:{self.serve.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.serve.host}:{self.serve.port}"

    def start(self) -> str:
        if is_healthy(self.api_url):
            raise PrefectServerError(f"something already answers on {self.api_url}; pass "
                                     f"--api-url {self.api_url} to use it, or choose another --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"PREFECT_HOME": str(Path(self.serve.prefect_home).resolve()),
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                            "PREFECT_SERVER_API_HOST": self.serve.host,
                            "PREFECT_SERVER_API_PORT": str(self.serve.port),
                            # A run waiting for its deployment's one slot looks again this often
                            # (Prefect's default, 30 s, adds up to 30 s to every queued run).
                            "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS":
                                str(self.serve.slot_wait_s)}
        env.pop("PREFECT_API_URL", None)
        # Prefect's own SQLite file under PREFECT_HOME, unless the user named another database.
        ready = prefect_db.seed(Path(env["PREFECT_HOME"]) / prefect_db.DB_NAME, None
                                if "PREFECT_SERVER_DATABASE_CONNECTION_URL" in env
                                else self.templates)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", self.serve.host,
                 "--port", str(self.serve.port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        if wait_for_health(self.api_url, self.timeout, process=self.process):
            ready()
            return self.api_url
        if self.process.poll() is not None:
            raise PrefectServerError(f"prefect server exited with {self.process.returncode}; "
                                     f"see {self.log_path}")
        self.stop()
        raise PrefectServerError(f"prefect server did not answer within {self.timeout:.0f}s; "
                                 f"see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _check_answers(api_url: str, timeout_s: float) -> None:
    """A configured Prefect API must answer /health (a server still starting gets a while)."""
    if not wait_for_health(api_url, min(timeout_s, 30)):
        raise PrefectServerError(
            f"the Prefect API at {api_url} (PREFECT_API_URL or the Prefect profile) does not "
            "answer; start it, or unset PREFECT_API_URL to let vecpress start a temporary one")


def wait_for_health(api_url: str, timeout_s: float, *, process: subprocess.Popen | None = None,
                    interval_s: float = 1.0) -> bool:
    """Whether the Prefect API at ``api_url`` answers /health within ``timeout_s``, asking every
    ``interval_s`` (at least once).

    The one wait for a server, whoever started it: given the ``process`` that serves it, the wait
    ends (False) as soon as that exits, and the caller tells an exit (``process.poll()``) from a
    timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        if process is not None and process.poll() is not None:
            return False
        if is_healthy(api_url):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def is_healthy(api_url: str) -> bool:
    """Whether the Prefect API at ``api_url`` (``http://host:port/api``) answers /health now."""
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# --- A temporary Prefect API for one CLI command ------------------------------------------------
#
# Without PREFECT_API_URL, Prefect starts its own "ephemeral" server, which (a) gives up after 20 s,
# too short on a busy 2-core machine, and (b) outlives a CLI process that is SIGKILLed. This one is
# a direct child (no grandchildren) that the kernel kills together with the CLI process.

TEMPORARY_STARTUP_TIMEOUT_S = 240.0
"""How long a temporary Prefect API may take to answer /health (migrations on a slow disk)."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PORT_IN_USE_EXIT = 3  # uvicorn's exit status when it cannot bind (another process took the port)


class TemporaryPrefectServer:
    """Prefect's API (no UI, no background services) as one uvicorn child on a free local port.

    Its ``PREFECT_HOME`` and SQLite database live in a throwaway directory that ``stop`` removes;
    when startup fails the directory is kept so that its ``server.log`` can be read. On Linux the
    child gets ``PR_SET_PDEATHSIG=SIGKILL``: it dies with the thread that started it, even when
    this process is SIGKILLed (so start it from the main thread).
    """

    def __init__(self, startup_timeout_s: float = TEMPORARY_STARTUP_TIMEOUT_S,
                 templates: Path | None = None) -> None:
        self.timeout = startup_timeout_s
        self.templates = templates
        self.home = Path(tempfile.mkdtemp(prefix="vecpress-prefect-"))
        self.log_path = self.home / "server.log"
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def start(self) -> str:
        """Start the server and return its API URL once /api/health answers.

        On any failure the child is stopped; on ``PrefectServerError`` the home (and its log) is
        kept for reading.
        """
        try:
            return self._start()
        except PrefectServerError:
            self._terminate()
            raise
        except BaseException:  # Ctrl-C while waiting
            self.stop()
            raise

    def _start(self) -> str:
        deadline = time.monotonic() + self.timeout
        ready = prefect_db.seed(self.home / prefect_db.DB_NAME, self.templates)
        for _ in range(3):  # the free port can be taken before uvicorn binds it: retry
            self.port = _free_port()
            self.process = self._spawn()
            if wait_for_health(self.api_url, deadline - time.monotonic(), process=self.process,
                               interval_s=0.25):
                ready()
                return self.api_url
            code = self.process.poll()
            if code is None:
                raise PrefectServerError(
                    f"temporary Prefect API did not answer within {self.timeout:.0f}s; see "
                    f"{self.log_path} (or set PREFECT_API_URL to a running server)")
            if code != _PORT_IN_USE_EXIT:
                raise PrefectServerError(f"temporary Prefect API exited with {code}; "
                                         f"see {self.log_path}")
        raise PrefectServerError(f"temporary Prefect API found no free port; see {self.log_path}")

    def stop(self) -> None:
        """Stop the server and remove its home (database and log)."""
        self._terminate()
        shutil.rmtree(self.home, ignore_errors=True)

    def _spawn(self) -> subprocess.Popen:
        # The command and flags of Prefect's own SubprocessASGIServer (prefect.server.api.server),
        # run directly: uvicorn without --workers or --reload is one process.
        import prefect

        env = {k: v for k, v in os.environ.items()
               if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_DATABASE_CONNECTION_URL")}
        env |= {"PREFECT_HOME": str(self.home),
                "PREFECT_SERVER_DATABASE_CONNECTION_URL":
                    f"sqlite+aiosqlite:///{self.home}/{prefect_db.DB_NAME}",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false",
                "PREFECT__SERVER_EPHEMERAL": "1",  # no UI, only the services ephemeral servers run
                "PREFECT__SERVER_FINAL": "1"}
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parents[1]),
                   "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
                   "--port", str(self.port), "--log-level", "warning", "--lifespan", "on"]
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, preexec_fn=_die_with_parent())

    def _terminate(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@contextmanager
def temporary_prefect_api(startup_timeout_s: float = TEMPORARY_STARTUP_TIMEOUT_S,
                          templates: Path | None = None) -> Iterator[str]:
    """Yield a Prefect API URL for one command, starting a ``TemporaryPrefectServer`` if none is set
    (from the migrated database in ``templates``: ``infra.prefect_db``).

    With PREFECT_API_URL (environment or Prefect profile) set, that URL is used and nothing starts.
    Otherwise PREFECT_API_URL is set, in the environment (for Dask workers and other child
    processes) and in Prefect's settings (already read when ``prefect`` was imported), until the
    block exits; then Prefect's log and event queues are flushed, the server is stopped and both
    are restored.
    """
    # Import Prefect before the environment changes: its root settings must not capture our URL.
    import prefect.context  # noqa: F401

    given = configured_api_url()
    if given:
        _check_answers(given, startup_timeout_s)
        yield given
        return
    server = TemporaryPrefectServer(startup_timeout_s, templates)
    url = server.start()  # a failure keeps the server's home, whose log the error names
    try:
        with using_api(url):
            yield url
    finally:
        server.stop()


def configured_api_url() -> str | None:
    """The Prefect API the user configured (PREFECT_API_URL or the Prefect profile), if any."""
    from prefect.settings import get_current_settings

    given = os.environ.get("PREFECT_API_URL") or get_current_settings().api.url
    return str(given) if given else None


@contextmanager
def using_api(url: str) -> Iterator[None]:
    """Point this process (and child processes) at the Prefect API ``url`` for the block; then
    flush Prefect's log and event queues while that server still listens, and restore."""
    import prefect.context
    from prefect.settings import temporary_settings

    os.environ["PREFECT_API_URL"] = url
    try:
        # The global settings context too: threads Prefect starts (log and event workers) do not
        # inherit our context, they read the global one.
        with temporary_settings(updates={"api.url": url}), \
                prefect.context._temporary_global_settings_context(prefect.context.get_settings_context()):
            try:
                yield
            finally:
                _flush_prefect_queues()
    finally:
        os.environ.pop("PREFECT_API_URL", None)


def _flush_prefect_queues(timeout_s: float = 30) -> None:
    """Send queued run logs and events now, while the server that should receive them is up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with suppress(RuntimeError):  # never started
            worker.drain_all(timeout=timeout_s, at_exit=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGKILL the child when its parent dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork, not in the child
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: nobody will send the signal
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec
