"""The watcher of the local Prefect server (``infra.local_prefect``): runs uvicorn with Prefect's
API and UI as its child and stops it once idle.

    python -m vecpress.infra.local_prefect_watch HOME PORT IDLE_STOP_S

Idle means: ``HOME/last_used`` (touched by every command that uses the server) is older than
``IDLE_STOP_S`` and no flow run is pending or running. The watcher exits when uvicorn exits (a
crash: the next command starts a new server) and on SIGTERM (``vecpress server stop``), taking
uvicorn with it; it removes ``state.json`` when it stops the server itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx

from vecpress.infra.prefect_db import DB_NAME
from vecpress.infra.prefect_server import is_healthy

CHECK_S = 10.0  # how often the watcher looks at the idle time and the child
ACTIVE_STATES = ["PENDING", "RUNNING", "CANCELLING"]


def _uvicorn(home: Path, port: int) -> subprocess.Popen:
    """Prefect's API and UI in one uvicorn process, without the background services (CLI runs
    need none: no schedules, no workers), on SQLite under ``home``."""
    import prefect

    env = {k: v for k, v in os.environ.items()
           if k not in ("PREFECT_API_URL", "PREFECT_API_KEY", "PREFECT_API_DATABASE_CONNECTION_URL")}
    env |= {"PREFECT_HOME": str(home),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/{DB_NAME}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT__SERVER_WEBSERVER_ONLY": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parents[1]),
         "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL)


def flows_active(port: int) -> bool:
    """Whether a flow run is pending or running (unknown counts as yes: never stop a busy one)."""
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/count", timeout=5, json={
            "flow_runs": {"state": {"type": {"any_": ACTIVE_STATES}}}})
        return answer.status_code != 200 or int(answer.json()) > 0
    except (httpx.HTTPError, ValueError):
        return True


def _idle_s(home: Path, started: float) -> float:
    try:
        last = max((home / "last_used").stat().st_mtime, started)
    except OSError:
        last = started
    return time.time() - last


def main(home: Path, port: int, idle_stop_s: float) -> int:
    server = _uvicorn(home, port)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = 0.0  # idle time counts from the first answer: a slow start is not idleness
    while server.poll() is None:
        time.sleep(min(CHECK_S, idle_stop_s / 4))
        if not started:
            started = time.time() if is_healthy(f"http://127.0.0.1:{port}/api") else 0.0
            continue
        if _idle_s(home, started) > idle_stop_s and not flows_active(port):
            print(f"idle for {idle_stop_s:.0f} s: stopping", flush=True)
            (home / "state.json").unlink(missing_ok=True)
            stop(signal.SIGTERM, None)
    return server.returncode or 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
