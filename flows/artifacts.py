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


def publish_failure(collection: str, error: BaseException, sources: list[str]) -> None:
    """A markdown artifact on a failed run: the error and the sources the next run reads again.

    Nothing of a failed run is stranded: every committed shard is kept, and the next run of the
    collection (nightly, manual or the next file change, which all reconcile their folders)
    reads the files this one did not finish.
    """
    if FlowRunContext.get() is None:
        return
    listed = "\n".join(f"- `{s}`" for s in sources[:50])
    more = f"\n- … and {len(sources) - 50} more" if len(sources) > 50 else ""
    text = (f"# vecpress ingest of '{collection}' failed\n\n**{type(error).__name__}**: {error}\n\n"
            "Every shard committed before the failure is kept. The next run of this collection "
            "(or running this one again) reads these sources again and finishes what this run "
            f"did not:\n\n{listed}{more}\n")
    try:
        create_markdown_artifact(text, key=artifact_key(collection, "failed"),
                                 description=f"failed ingest: {type(error).__name__}")
    except Exception as exc:  # the run's own error is what must reach the user
        log.warning("could not publish the failure artifact: %s", exc)
