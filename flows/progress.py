"""Progress over Dask futures: a rich bar on a terminal, log lines (Prefect or stdlib) elsewhere."""

from __future__ import annotations

import logging
import sys
from typing import Any

from distributed import Future, as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        from prefect.logging import get_run_logger

        return get_run_logger()
    except Exception:  # outside a Prefect run
        return logging.getLogger("vecpress")


class PrefectProgress:
    """A progress artifact on the current Prefect flow run (shown as a bar in the UI), if any."""

    def __init__(self, label: str) -> None:
        self.label, self.id = label, None
        try:
            from prefect.artifacts import create_progress_artifact
            from prefect.context import FlowRunContext

            if FlowRunContext.get() is not None:
                self.id = create_progress_artifact(0.0, description=f"vecpress: {label}")
        except Exception:  # progress must never fail the work it reports on
            self.id = None

    def update(self, done: int, total: int, unit: str) -> None:
        if self.id is None:
            return
        try:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self.id, 100.0 * done / max(total, 1),
                                     description=f"vecpress: {self.label} {done:,}/{total:,} {unit}")
        except Exception:
            self.id = None


def gather(futures: list[Future], label: str, weights: list[int] | None = None,
           unit: str = "shards") -> list[Any]:
    """Results in submission order; reports progress as futures finish (terminal, log, Prefect).

    ``weights`` (e.g. passages per shard) make progress count items rather than futures.
    """
    weights = weights or [1] * len(futures)
    total, finished = sum(weights), 0
    log = _logger()
    prefect_bar = PrefectProgress(label)
    index = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    step = max(1, len(futures) // 10)
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not sys.stderr.isatty(), transient=True) as bar:
        task = bar.add_task(label, total=total)
        for done, future in enumerate(as_completed(futures), start=1):
            position = index[future.key]
            results[position] = future.result()
            finished += weights[position]
            bar.advance(task, weights[position])
            if done % step == 0 or done == len(futures):
                log.info("%s: %d/%d shards done (%s/%s %s)", label, done, len(futures),
                         f"{finished:,}", f"{total:,}", unit)
                prefect_bar.update(finished, total, unit)
    return results
