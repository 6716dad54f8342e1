"""The local Prefect server CLI runs share (``vecpress server``): one server however many commands
start it at once, a run's link that still opens after the command exited, a dead server noticed
and started again, PREFECT_API_URL always winning, and a server that stops itself once idle.

Real processes: the ``vecpress`` CLI, the watcher and uvicorn it starts, HTTP to the server.
One home for the module, so that only the first start migrates a database.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from s3 import free_port

from vecpress.infra.local_prefect import LocalPrefectServer, prefect_api, prefect_version
from vecpress.infra.settings import LocalServerSettings

pytestmark = pytest.mark.slow
WATCHER = "vecpress.infra.local_prefect_watch"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("local-prefect")


def _env(home: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    return env | {"VECPRESS_SERVER_HOME": str(home), "VECPRESS_SERVER_PORT": str(port),
                  "VECPRESS_SERVER_AUTO_START": "true", "COLUMNS": "200"} | extra


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecpress", *args], env=env,
                          capture_output=True, text=True, timeout=600)


def _watchers(home: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if WATCHER in cmd and str(home) in cmd and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def _gone(proc: psutil.Process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.2)
    return False


def test_two_starts_at_once_share_one_server_that_serves_the_ui_and_stops(home: Path) -> None:
    port = free_port()
    env = _env(home, port)
    starts = [subprocess.Popen([sys.executable, "-m", "vecpress", "server", "start", "--json"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    try:
        outs = [p.communicate(timeout=600) for p in starts]
        assert [p.returncode for p in starts] == [0, 0], [err[-2000:] for _, err in outs]
        states = [json.loads(out) for out, _ in outs]
        assert states[0]["running"] and states[0]["pid"] == states[1]["pid"]
        assert len(_watchers(home)) == 1  # the second found the first one's server
        assert httpx.get(states[0]["ui"], timeout=10).status_code == 200  # the UI answers
        status = json.loads(_cli(env, "server", "status", "--json").stdout)
        assert status["pid"] == states[0]["pid"] and status["ui"] == f"http://127.0.0.1:{port}"
        said = _cli(env, "server", "status")  # the answer on stdout, as --json's
        assert said.stdout.startswith(f"local Prefect server: http://127.0.0.1:{port} (pid ")
    finally:
        stopped = _cli(env, "server", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stderr
    assert not _watchers(home)
    assert json.loads(_cli(env, "server", "status", "--json").stdout)["running"] is False
    assert "no local Prefect server ran" in _cli(env, "server", "stop").stderr


def test_a_server_of_a_removed_install_or_another_prefect_is_replaced(tmp_path: Path) -> None:
    """A server whose interpreter is gone (a deleted checkout or virtualenv: CI's clones) answers
    until a request imports a module lazily; one running another Prefect version may not match
    this install's client. The next start stops either and starts its own, unless a flow run is
    using the other version's: that one is used, with a warning."""
    home, port = tmp_path / "home", free_port()
    env = _env(home, port)
    assert _cli(env, "server", "start").returncode == 0
    [old] = _watchers(home)
    state = json.loads((home / "state.json").read_text())
    assert state["python"] == sys.executable and "prefect" not in state  # stop 52's fields only
    assert (home / "prefect_version").read_text() == f"{prefect_version()} {old.pid}"
    (home / "state.json").write_text(json.dumps(state | {"python": str(tmp_path / "gone/python")}))
    try:
        again = json.loads(_cli(env, "server", "start", "--json").stdout)
        assert again["running"] and again["pid"] != old.pid and again["python"] == sys.executable
        assert _gone(old, 30) and len(_watchers(home)) == 1
        [old] = _watchers(home)
        (home / "prefect_version").write_text(f"3.0.0 {old.pid}")
        os.utime(home / "last_used")  # just used, however slowly the last command exited
        kept = _cli(env, "server", "start", "--json")  # just used: a command may be setting up
        assert json.loads(kept.stdout)["pid"] == old.pid and "runs Prefect 3.0.0" in kept.stderr
        idle = time.time() - 60
        os.utime(home / "last_used", (idle, idle))
        again = json.loads(_cli(env, "server", "start", "--json").stdout)
        assert again["pid"] != old.pid and again["prefect"] == prefect_version()
        assert _gone(old, 30)
        [busy] = _watchers(home)
        api = f"http://127.0.0.1:{port}/api"
        flow = httpx.post(f"{api}/flows/", json={"name": "elsewhere"}).json()["id"]
        httpx.post(f"{api}/flow_runs/", json={"flow_id": flow, "state": {"type": "RUNNING"}}
                   ).raise_for_status()
        (home / "prefect_version").write_text(f"3.0.0 {busy.pid}")
        os.utime(home / "last_used", (idle, idle))
        kept = _cli(env, "server", "start", "--json")
        assert json.loads(kept.stdout)["pid"] == busy.pid and busy.is_running()
        assert "runs Prefect 3.0.0" in kept.stderr and "replaced once idle" in kept.stderr
    finally:
        _cli(env, "server", "stop")
    assert not _watchers(home)


def test_an_ingest_restarts_a_dead_server_and_its_run_link_opens_after_it_exited(
        home: Path, tmp_path: Path, tiny_model: str, model_cache: Path) -> None:
    port = free_port()
    env = _env(home, port, VECPRESS_MODEL__PATH=tiny_model,
               VECPRESS_MODEL__CACHE_DIR=str(model_cache), VECPRESS_DASK__IN_PROCESS_BYTES="262144")
    assert _cli(env, "server", "start").returncode == 0
    [watcher] = _watchers(home)
    for child in watcher.children():  # uvicorn dies: the watcher follows it
        child.send_signal(signal.SIGKILL)
    assert _gone(watcher, 30)
    notes = tmp_path / "notes"
    notes.mkdir()
    for i in range(5):
        (notes / f"n{i}.txt").write_text(f"Note {i}: the wind came from the west on day {i}.")
    try:
        run = _cli(env, "ingest", str(notes), "--collection", "notes", "--storage-root",
                   str(tmp_path / "data"), "--milvus-uri", str(tmp_path / "notes.db"))
        assert run.returncode == 0, run.stderr[-3000:]
        link = re.search(rf"http://127\.0\.0\.1:{port}/runs/flow-run/([0-9a-f-]{{36}})",
                         run.stdout + run.stderr)
        assert link, (run.stdout + run.stderr)[-3000:]  # the link names the shared server
        # 5 short notes, under dask.in_process_bytes (opted in): no worker processes started
        assert "LocalCluster (in process): 1 worker(s)" in run.stdout + run.stderr
        assert len(_watchers(home)) == 1  # noticed dead, started again
        # The command has exited; its run is still there, finished, where the link points.
        answer = httpx.get(f"http://127.0.0.1:{port}/api/flow_runs/{link.group(1)}", timeout=10)
        assert answer.status_code == 200 and answer.json()["state"]["type"] == "COMPLETED"
        # The Python API reports to the server while it is up (and starts none).
        (notes / "n9.txt").write_text("Note 9: a quiet day, no wind at all.")
        code = ("import vecpress; from vecpress.infra.settings import Settings; "
                f"s = Settings(collection='notes', storage_root={str(tmp_path / 'data')!r}); "
                f"print(vecpress.ingest([{str(notes)!r}], s).run_id)")
        api_run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                 text=True, timeout=600)
        assert api_run.returncode == 0, api_run.stderr[-3000:]
        runs = httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/count", json={}, timeout=10)
        assert runs.json() == 2 and len(_watchers(home)) == 1
    finally:
        _cli(env, "server", "stop")
    assert not _watchers(home)


def test_a_configured_api_url_wins_and_no_local_server_starts(
        home: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness) -> None:
    from prefect.settings import PREFECT_API_URL

    answering = str(PREFECT_API_URL.value())
    monkeypatch.setenv("PREFECT_API_URL", answering)
    local = LocalServerSettings(home=str(home), port=free_port())
    with prefect_api(local, startup_timeout_s=30) as url:
        assert url == answering
    assert LocalPrefectServer(local).status() is None and not _watchers(home)


def test_an_idle_server_stops_itself(home: Path) -> None:
    env = _env(home, free_port(), VECPRESS_SERVER_IDLE_STOP_S="4")
    try:
        assert _cli(env, "server", "start").returncode == 0
        [watcher] = _watchers(home)
        assert _gone(watcher, 60), "the idle server did not stop itself"
        assert not (home / "state.json").exists()
        assert json.loads(_cli(env, "server", "status", "--json").stdout)["running"] is False
    finally:
        _cli(env, "server", "stop")


def test_a_command_run_sends_no_flow_heartbeats_unless_asked(tmp_path: Path) -> None:
    """Prefect's flow engine reads ``flows.heartbeat_frequency`` at a run's start; a run of ours
    turns it off (its end waited up to 1 s for the heartbeat thread), unless Prefect's settings
    ask for heartbeats (here PREFECT_FLOWS_HEARTBEAT_FREQUENCY, in a fresh process)."""
    from prefect.settings import get_current_settings

    from vecpress.infra.local_prefect import without_flow_heartbeats

    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None  # Prefect's default: a beat every 180 s
    with without_flow_heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before
    code = ("from prefect.settings import get_current_settings as s\n"
            "from vecpress.infra.local_prefect import without_flow_heartbeats\n"
            "with without_flow_heartbeats():\n    print(s().flows.heartbeat_frequency)")
    asked = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=os.environ | {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "60"},
                           timeout=120, cwd=tmp_path)
    assert asked.stdout.strip() == "60", asked.stderr[-2000:]
