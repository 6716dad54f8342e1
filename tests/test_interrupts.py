"""A Ctrl-C is not lost where Python swallows exceptions: a ``KeyboardInterrupt`` raised inside a
garbage-collection callback (Dask installs one) is printed as "Exception ignored" and dropped, and
an ingest that got its only SIGINT there ran to its end (a red CI run of the Ctrl-C test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import gc, os, signal, sys, time
from vecpress.cli.interrupts import interrupt_taken, stop_on_sigint
stop_on_sigint(resend=sys.argv[1] == "resend")
fired = []
def land_inside(phase, info):  # the signal's handler runs here, inside the gc callback
    if phase == "start" and not fired:
        fired.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200_000):
            pass
gc.callbacks.append(land_inside)
try:
    gc.collect()
    gc.callbacks.remove(land_inside)
    assert fired
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.05)
    print("ran on")
except KeyboardInterrupt:
    interrupt_taken()
    print("interrupted")
"""


@pytest.mark.parametrize(("mode", "outcome"), [("resend", "interrupted"), ("plain", "ran on")])
def test_an_interrupt_swallowed_in_a_gc_callback_is_delivered_again(mode: str, outcome: str
                                                                    ) -> None:
    """With the resend (what `vecpress ingest` installs) the interrupt is delivered again and
    stops the command; with Python's own handler it is swallowed and the command runs on."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" in done.stderr and "KeyboardInterrupt" in done.stderr
    assert done.stdout.strip() == outcome
