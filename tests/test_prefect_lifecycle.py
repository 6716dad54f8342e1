"""The temporary Prefect API of a CLI command lives exactly as long as the command, even a killed one.

Real processes throughout: the ``vecpress`` console script, the uvicorn server it starts, psutil to
find them and HTTP to ask the server whether it answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from vecpress.infra.prefect_server import is_healthy, temporary_prefect_api

SERVER_APP = "prefect.server.api.server:create_app"
STARTUP_S = 240  # as generous as the server's own startup timeout
GONE_S = 60  # "outlived" means for good: generous for a loaded machine


def _env(tmp_path: Path) -> dict[str, str]:
    """No Prefect API configured; the server's throwaway home goes under ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_")}
    return env | {"HF_HUB_OFFLINE": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                  "TMPDIR": str(tmp_path), "COLUMNS": "200"}


def _corpus(folder: Path, files: int = 30) -> Path:
    folder.mkdir()
    for i in range(files):
        (folder / f"note-{i:02d}.txt").write_text(
            f"Note {i} is about the weather on day {i}. It rained for {i % 5} hours in the morning. "
            f"The afternoon was dry, and the evening brought a wind from the {['north', 'west'][i % 2]}."
            "\n")
    return folder


def _port(proc: psutil.Process) -> int:
    cmd = proc.cmdline()
    return int(cmd[cmd.index("--port") + 1])


def _answering_server(parent: psutil.Process, deadline: float) -> psutil.Process:
    """The descendant of ``parent`` that runs the Prefect API, once it answers /api/health."""
    while time.monotonic() < deadline:
        with contextlib.suppress(psutil.Error):
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.Error, ValueError, IndexError):
                    if SERVER_APP in child.cmdline() and is_healthy(f"http://127.0.0.1:{_port(child)}/api"):
                        return child
        if not parent.is_running() or parent.status() == psutil.STATUS_ZOMBIE:
            pytest.fail("the CLI exited before its Prefect API answered")
        time.sleep(0.5)
    pytest.fail(f"no answering Prefect API under pid {parent.pid} within {STARTUP_S}s")


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (a container's pid 1 may never reap an orphan)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone_within(proc: psutil.Process, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(proc) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not _alive(proc)


@pytest.mark.slow
def test_killing_the_cli_kills_its_prefect_api(tmp_path: Path) -> None:
    sources = _corpus(tmp_path / "notes")
    vecpress = Path(sys.executable).with_name("vecpress")
    cli = subprocess.Popen(
        [str(vecpress), "ingest", str(sources), "--collection", "lifecycle",
         "--storage-root", str(tmp_path / "data"), "--milvus-uri", str(tmp_path / "milvus.db")],
        env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        started = time.monotonic()
        server = _answering_server(psutil.Process(cli.pid), started + STARTUP_S)
        print(f"temporary Prefect API answered {time.monotonic() - started:.1f}s after the CLI "
              f"started")
        assert server.children(recursive=True) == []  # no grandchild that could outlive it

        os.kill(cli.pid, signal.SIGKILL)  # the CLI alone, not its process group
        cli.wait(timeout=30)

        assert _gone_within(server, GONE_S), f"Prefect API {server.cmdline()} outlived the CLI"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(timeout=30)


_IN_PROCESS = """
import json, os, time
import psutil
from vecpress.infra.prefect_server import temporary_prefect_api

started = time.monotonic()
with temporary_prefect_api() as url:
    up_s = time.monotonic() - started
    inside = os.environ.get("PREFECT_API_URL")
    from prefect.settings import get_current_settings
    settings_url = get_current_settings().api.url
    servers = psutil.Process().children(recursive=True)
    grandchildren = [c.pid for p in servers for c in p.children(recursive=True)]
after = os.environ.get("PREFECT_API_URL")
alive_after = [p.pid for p in servers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
print(json.dumps({"url": url, "inside": inside, "settings_url": settings_url, "after": after,
                  "servers": [p.pid for p in servers], "grandchildren": grandchildren,
                  "alive_after": alive_after, "up_s": up_s,
                  "from_settings_after": get_current_settings().api.url}))
"""


@pytest.mark.slow
def test_context_manager_sets_the_url_only_while_open(tmp_path: Path) -> None:
    # A fresh interpreter: in this one the session's Prefect harness may already set an API URL.
    result = subprocess.run([sys.executable, "-c", _IN_PROCESS], env=_env(tmp_path),
                            capture_output=True, text=True, timeout=STARTUP_S + 60)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    print(f"temporary Prefect API answered after {seen['up_s']:.1f}s")

    assert seen["url"].startswith("http://127.0.0.1:") and seen["url"].endswith("/api")
    assert seen["inside"] == seen["settings_url"] == seen["url"]
    assert seen["after"] is None and seen["from_settings_after"] is None
    assert len(seen["servers"]) == 1 and seen["grandchildren"] == []
    assert seen["alive_after"] == []  # stopped when the block exited, not only at interpreter exit
    assert list(tmp_path.glob("vecpress-prefect-*")) == []  # the throwaway home is removed


def test_an_existing_api_url_is_used_and_nothing_starts(monkeypatch: pytest.MonkeyPatch,
                                                        prefect_harness) -> None:
    from prefect.settings import PREFECT_API_URL

    from vecpress.infra.prefect_server import PrefectServerError

    answering = str(PREFECT_API_URL.value())
    monkeypatch.setenv("PREFECT_API_URL", answering)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with temporary_prefect_api() as url:
        assert url == answering
        assert {p.pid for p in psutil.Process().children(recursive=True)} == before
    assert os.environ["PREFECT_API_URL"] == answering
    # A configured API that does not answer is said plainly (the CLI exits 3), nothing starts.
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    with pytest.raises(PrefectServerError, match="does not answer"), \
            temporary_prefect_api(startup_timeout_s=2):
        pass
    assert {p.pid for p in psutil.Process().children(recursive=True)} == before


def test_the_wait_for_a_server_ends_when_its_process_exits() -> None:
    """Every start of a Prefect server waits through ``wait_for_health``: a server process that
    exits ends the wait at once, not at the timeout."""
    from vecpress.infra.prefect_server import wait_for_health

    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    started = time.monotonic()
    assert not wait_for_health("http://127.0.0.1:9/api", 120, process=process, interval_s=0.1)
    assert time.monotonic() - started < 60 and process.returncode == 3


@pytest.mark.slow
def test_a_new_server_starts_from_the_migrated_database_of_the_first(tmp_path: Path) -> None:
    """The first server on an empty database leaves a migrated copy; the next new one starts
    from it (and is ready sooner), and an existing database or template is never replaced."""
    import sqlite3

    import httpx

    from vecpress.infra import prefect_db
    from vecpress.infra.prefect_server import TemporaryPrefectServer

    templates = tmp_path / "templates"
    template = prefect_db.template_of(templates)
    times = []
    for _ in range(2):
        server = TemporaryPrefectServer(templates=templates)
        started = time.monotonic()
        try:
            server.start()
            times.append(time.monotonic() - started)
            if len(times) == 1:  # mark the template: the next server's database must have it
                assert template.is_file()
                with sqlite3.connect(template) as db:
                    assert db.execute("select count(*) from alembic_version").fetchone() == (1,)
                    db.execute("create table copied_from_template (x int)")
            else:  # the seeded database serves: a flow is created in it
                made = httpx.post(f"{server.api_url}/flows/", json={"name": "seeded"}, timeout=30)
                assert made.status_code in (200, 201), made.text
                with sqlite3.connect(server.home / prefect_db.DB_NAME) as db:
                    names = {row[0] for row in db.execute("select name from sqlite_master")}
                    assert "copied_from_template" in names
                    assert db.execute("select count(*) from flow where name = 'seeded'"
                                      ).fetchone() == (1,)
        finally:
            server.stop()
    print(f"temporary Prefect API answered after {times[0]:.1f} s from an empty database, "
          f"{times[1]:.1f} s from the template")
    # An existing database is never replaced, and nothing of it becomes a template.
    before = template.stat().st_mtime_ns
    existing = tmp_path / "home" / prefect_db.DB_NAME
    existing.parent.mkdir()
    existing.write_bytes(b"not replaced")
    prefect_db.seed(existing, templates)()
    assert existing.read_bytes() == b"not replaced" and template.stat().st_mtime_ns == before
    # A new home gets a copy of the template, which stays as it was.
    fresh = tmp_path / "fresh" / prefect_db.DB_NAME
    prefect_db.seed(fresh, templates)()
    assert fresh.read_bytes() == template.read_bytes() and template.stat().st_mtime_ns == before
    # Two servers that both started on an empty file: the second one's database does not
    # replace the template the first one kept.
    raced = tmp_path / "raced"
    keep_second = prefect_db.seed(tmp_path / "second" / prefect_db.DB_NAME, raced)
    (tmp_path / "second" / prefect_db.DB_NAME).parent.mkdir()
    shutil.copyfile(fresh, tmp_path / "second" / prefect_db.DB_NAME)
    raced.mkdir()
    prefect_db.template_of(raced).write_bytes(b"the first server's")
    keep_second()
    assert prefect_db.template_of(raced).read_bytes() == b"the first server's"
    # No template folder (the setting empty): nothing is copied, nothing is kept.
    other = tmp_path / "other" / prefect_db.DB_NAME
    prefect_db.seed(other, None)()
    assert not other.exists() and not list(tmp_path.glob("other"))
