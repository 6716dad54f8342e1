"""Ctrl-C for the commands that run long (ingest, serve): a ``KeyboardInterrupt`` that stops them,
whatever the shell did with SIGINT, and that is not lost where Python swallows exceptions."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report it: 128 + the signal's number
RESEND_S = 1.0  # an interrupt not taken by then is delivered again (``stop_on_sigint``)
_taken = threading.Event()


def stop_on_sigint(resend: bool = False) -> None:
    """Ctrl-C or ``kill -INT`` stops the command (``KeyboardInterrupt``) even when a shell started
    it as a background job (``cmd &`` in a script, CI), which leaves SIGINT ignored; Python keeps
    an ignored disposition, so the signal did nothing and the run went on to its end.

    Python swallows an exception raised inside a garbage-collection callback or a ``__del__``
    ("Exception ignored in ..."), and Dask runs a gc callback often: a Ctrl-C that landed there
    was lost and the run went on to its end (a red CI run). With ``resend`` (an ingest, whose
    flow lets a ``KeyboardInterrupt`` through to the command), the signal is sent again every
    ``RESEND_S`` until the command says it took it (``interrupt_taken``). `vecpress serve` does
    without: Prefect's serve may take the interrupt itself and shut down, which a resend would
    break."""
    _taken.clear()
    signal.signal(signal.SIGINT, _interrupt if resend else signal.default_int_handler)


def interrupt_taken() -> None:
    """The command caught its ``KeyboardInterrupt``: no resend, and a second Ctrl-C meanwhile
    does not break the one line it says while it stops."""
    _taken.set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _interrupt(signum: int, frame: Any) -> None:
    timer = threading.Timer(RESEND_S, _resend)
    timer.daemon = True
    timer.start()
    signal.default_int_handler(signum, frame)


def _resend() -> None:
    if not _taken.is_set():
        os.kill(os.getpid(), signal.SIGINT)
