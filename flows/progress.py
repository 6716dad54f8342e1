"""Progress of long work: a rich bar on a terminal, log lines (Prefect or stdlib) elsewhere, and a
progress artifact on the Prefect run."""

from __future__ import annotations

import logging
import sys
import time
from typing import cast
from uuid import UUID

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from vecpress.infra.log_marks import HEADLINE, STAGE_LINE
from vecpress.tasks.ingest.ledger import RunProgress

__all__ = ["HEADLINE", "STAGE_LINE", "PrefectProgress", "StreamProgress"]


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # outside a Prefect run
        return logging.getLogger("vecpress")


class PrefectProgress:
    """A progress artifact on the current Prefect flow run (shown as a bar in the UI), if any."""

    def __init__(self, label: str) -> None:
        self.id: UUID | None = None
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() is not None:
                # In a sync flow Prefect's dual sync/async API returns the id itself.
                self.id = cast(UUID, create_progress_artifact(0.0, description=f"vecpress: {label}"))
        except Exception:  # progress must never fail the work it reports on
            self.id = None

    def update(self, done: int, total: int, text: str) -> None:
        if self.id is None:
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.id, 100.0 * done / max(total, 1),
                                     description=f"vecpress: {text}")
        except Exception:
            self.id = None


class StreamProgress:
    """Progress of a streaming run (``RunProgress``: passages embedded, shards loaded): a rich bar
    on a terminal, a log line every ``every_s`` seconds, and a progress artifact on the Prefect
    run (a bar in the UI)."""

    def __init__(self, label: str, every_s: float = 10.0) -> None:
        self.every_s, self.last = every_s, 0.0
        self.log = _logger()
        self.prefect = PrefectProgress(label)
        self.bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.description}"), TimeElapsedColumn(),
                            disable=not sys.stderr.isatty(), transient=True)
        self.task = self.bar.add_task("", total=None)

    def __enter__(self) -> StreamProgress:
        self.bar.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.bar.stop()

    def update(self, progress: RunProgress) -> None:
        total = progress.passages or None
        self.bar.update(self.task, completed=progress.embedded, total=total,
                        description=f"{progress.loaded}/{progress.shards} shards loaded")
        self.prefect.update(progress.embedded, progress.passages, progress.line())
        done = progress.shards > 0 and progress.loaded == progress.shards
        if time.monotonic() - self.last >= self.every_s or done:
            # A headline where no bar is drawn (a log file, CI): the bar is the terminal's line.
            extra = HEADLINE if self.bar.disable else {}
            self.log.info("%s", progress.line(), extra=extra)
            self.last = time.monotonic()
