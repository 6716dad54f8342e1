"""What a flow run prints in the terminal.

By default: the run's link, its headline lines (one per stage: ``flows.progress.HEADLINE``),
progress bars and every warning or error, each as a plain line. ``--verbose`` adds Prefect's own
lines (task states, the flow's start and end) in Prefect's format. Either way every line reaches
the Prefect API, so the run's page in the UI holds all of them.
"""

from __future__ import annotations

import logging

RUN_LINK = "View at "  # how Prefect logs a flow run's URL
# Prefect's lines about a run's end, a task's failure and a Ctrl-C: the command reports each
# itself, once (one line for a user error or an interrupt, the traceback for a bug), so by default
# they would only repeat it (a user error was said twice, a Ctrl-C's crash line twice).
RUN_END = ("Finished in state", "Encountered exception during execution",
           "Task run failed with exception", "Crash detected!")


class _HeadlinesOnly(logging.Filter):
    """Passes warnings and errors, the run's link and its headline lines; nothing else."""

    def __init__(self, mark: str) -> None:
        super().__init__()
        self.mark = mark

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if message.startswith(RUN_END):
            return False
        return (record.levelno >= logging.WARNING or getattr(record, self.mark, False)
                or message.startswith(RUN_LINK))


class _PlainLines(logging.Formatter):
    """A headline as itself, a warning or error after its level, the run's link after ``run:``;
    no timestamps or run names (they are on the run's page)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if message.startswith(RUN_LINK):
            return f"run: {message[len(RUN_LINK):]}"
        if record.levelno >= logging.WARNING:
            message = f"{record.levelname.lower()}: {message}"
        if record.exc_info:  # a bug's traceback stays (user errors drop theirs: common.py)
            message += "\n" + self.formatException(record.exc_info)
        return message


def configure(verbose: bool) -> None:
    """Set how the terminal shows this process's flow runs; call after Prefect is imported (its
    import installs the console handler this changes)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    from vecpress.infra.log_marks import STAGE_LINE

    if verbose:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_HeadlinesOnly(STAGE_LINE))
            handler.setFormatter(_PlainLines())
