"""Prefect artifacts of an ingest run: the summary table and a markdown report, per collection.

Artifacts are keyed by collection, so the Prefect UI's Artifacts page keeps each collection's
history of runs; outside a Prefect run (plain function calls in tests) nothing is published.
"""

from __future__ import annotations

import logging

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext

from vecpress.tasks.report.markdown import report_markdown, summary_rows
from vecpress.tasks.report.summary import IngestSummary

log = logging.getLogger("vecpress")


def artifact_key(collection: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"vecpress-{collection.lower().replace('_', '-')}-{what}"


def publish_summary(summary: IngestSummary, run_dir: str | None = None) -> None:
    """Table + markdown artifacts on the current flow run (no-op outside one)."""
    if FlowRunContext.get() is None:
        return
    try:
        create_table_artifact(summary_rows(summary), key=artifact_key(summary.collection, "summary"),
                              description=f"ingest run {summary.run_id}")
        create_markdown_artifact(report_markdown(summary, run_dir),
                                 key=artifact_key(summary.collection, "report"),
                                 description=f"ingest run {summary.run_id}")
    except Exception as exc:  # an unreachable API must not fail a finished ingest
        log.warning("could not publish Prefect artifacts: %s", exc)
