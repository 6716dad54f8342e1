"""No process left behind: find what the tests started that still runs once the session ends.

A process counts when it descends from pytest or carries the session's mark in its environment
(one whose parent died is re-parented to init, and only the mark still ties it to the tests).
Python's own helpers that end with the interpreter (multiprocessing's resource tracker and fork
server) are not leftovers.
"""

from __future__ import annotations

import contextlib
import sys
import time

import psutil
import pytest

LEFTOVER_MARK = "VECPRESS_TEST_SESSION"
GRACE_S = 20.0  # a server told to stop may take a few seconds to exit
_PYTHON_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def _marked(proc: psutil.Process, mark: str) -> bool:
    try:
        return proc.environ().get(LEFTOVER_MARK) == mark
    except (psutil.Error, OSError):
        return False


def leftover_processes() -> list[psutil.Process]:
    """Live processes of this test session other than pytest itself and Python's helpers."""
    me = psutil.Process()
    mark = str(me.pid)
    found = {p.pid: p for p in me.children(recursive=True)}
    for proc in psutil.process_iter():
        if proc.pid not in found and proc.pid != me.pid and _marked(proc, mark):
            found[proc.pid] = proc
    alive = []
    for proc in found.values():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(h in " ".join(proc.cmdline()) for h in _PYTHON_HELPERS):
                continue
        except psutil.Error:
            continue
        alive.append(proc)
    return alive


# (pid, create time) of each child process -> the test during which it was first seen: a
# leftover's report names the test that started it (or the first test that used its fixture).
_first_seen: dict[tuple[int, float], str] = {}
_report: list[str] = []


def _key(proc: psutil.Process) -> tuple[int, float] | None:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return None


def note_children(test_id: str) -> None:
    """Record the processes alive under pytest after ``test_id`` (cheap: one walk of the tree)."""
    for proc in psutil.Process().children(recursive=True):
        key = _key(proc)
        if key is not None:
            _first_seen.setdefault(key, test_id)


def _describe(proc: psutil.Process) -> str:
    key = _key(proc)
    origin = _first_seen.get(key, "no test saw it") if key else "gone"
    try:
        return f"pid {proc.pid} (first seen after {origin}): {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid}: (gone)"


def fail_on_leftovers(session: pytest.Session) -> None:
    """Wait up to ``GRACE_S`` for the session's processes to exit; kill and report the rest, and
    fail the run."""
    deadline = time.monotonic() + GRACE_S
    alive = leftover_processes()
    while alive and time.monotonic() < deadline:
        time.sleep(0.5)
        alive = leftover_processes()
    if not alive:
        return
    lines = [_describe(p) for p in alive]
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _report.append(f"FAILED: {len(lines)} process(es) started by the tests still ran "
                   f"{GRACE_S:.0f} s after the session ended (killed now):\n  "
                   + "\n  ".join(lines))
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def print_report() -> None:
    """Print the leftovers last of all (``pytest_unconfigure``), below pytest's summary, where a
    CI log's tail shows why a run with every test passed still failed."""
    for message in _report:
        print(message, file=sys.stderr, flush=True)
