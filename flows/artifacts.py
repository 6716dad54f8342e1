"""Prefect artifacts of an ingest run: the summary table and a markdown report, per collection.

Artifacts are keyed by collection, so the Prefect UI's Artifacts page keeps each collection's
history of runs; outside a Prefect run (plain function calls in tests) nothing is published.
"""

from __future__ import annotations

import logging

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.context import FlowRunContext

from vecpress.tasks.report import IngestSummary

log = logging.getLogger("vecpress")


def artifact_key(collection: str, what: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    return f"vecpress-{collection.lower().replace('_', '-')}-{what}"


def summary_rows(summary: IngestSummary) -> list[dict[str, str]]:
    rows = [{"what": "files new / changed / unchanged / deleted",
             "value": " / ".join(str(summary.changes.get(k, 0))
                                 for k in ("new", "changed", "unchanged", "deleted"))},
            {"what": "passages chunked / embedded / reused",
             "value": f"{summary.passages:,} / {summary.passages_embedded:,} / "
                      f"{summary.passages_reused:,}"},
            {"what": "rows deleted from Milvus", "value": f"{summary.rows_deleted:,}"},
            {"what": "rows in Milvus", "value": f"{summary.rows_in_milvus:,}"},
            {"what": "input errors (skipped)", "value": f"{len(summary.errors):,}"}]
    rows += [{"what": f"stage: {s.stage}",
              "value": f"{s.seconds:.1f} s, {s.items:,} {s.unit}, {s.per_second:,.1f}/s"}
             for s in summary.stages]
    rows += [{"what": f"bytes/vector: {k}", "value": f"{v:,.0f}"}
             for k, v in summary.bytes_per_vector.items()]
    rows += [{"what": k, "value": f"{v:.3f}" if isinstance(v, float) else f"{v:,}"}
             for k, v in summary.recall.items()]
    return rows


def report_markdown(summary: IngestSummary) -> str:
    lines = [f"# vecpress run `{summary.run_id}` → `{summary.collection}`", "",
             f"Milvus: `{summary.milvus_uri}`; cluster: {summary.cluster or '-'}", "",
             "| what | value |", "| --- | --- |"]
    lines += [f"| {r['what']} | {r['value']} |" for r in summary_rows(summary)]
    codec = summary.codec
    if codec and not summary.codec_reused:
        lines += ["", "## Codec trained", "",
                  f"PCA {codec.get('pca_dim')} keeps {codec.get('explained_variance', 0):.1%} of the "
                  f"variance; PQ{codec.get('pq_m')}×{codec.get('pq_nbits')} relative error "
                  f"{codec.get('pq_relative_error', 0):.3f}; codec id `{codec.get('codec_id')}`."]
    for err in summary.errors[:20]:
        lines.append(f"- input error `{err['source']}` {err['location']}: {err['message']}")
    return "\n".join(lines) + "\n"


def publish_summary(summary: IngestSummary) -> None:
    """Table + markdown artifacts on the current flow run (no-op outside one)."""
    if FlowRunContext.get() is None:
        return
    try:
        create_table_artifact(summary_rows(summary), key=artifact_key(summary.collection, "summary"),
                              description=f"ingest run {summary.run_id}")
        create_markdown_artifact(report_markdown(summary),
                                 key=artifact_key(summary.collection, "report"),
                                 description=f"ingest run {summary.run_id}")
    except Exception as exc:  # an unreachable API must not fail a finished ingest
        log.warning("could not publish Prefect artifacts: %s", exc)
