"""A run's headline lines: one short line per stage, for the terminal and the run's log.

They say what a stage did in the user's terms (files, passages, rows, seconds); the run summary's
tables (``tasks.report.summary.render``) hold the rest.
"""

from __future__ import annotations

from vecpress.tasks.collection.loading import LoadResult
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.model_files import model_label
from vecpress.tasks.ingest.results import StreamResult
from vecpress.tasks.inputs.records import InputError
from vecpress.tasks.report.results import CheckResult
from vecpress.tasks.report.summary import QUARANTINE, percent_text


def model_line(artifact: ModelArtifact, seconds: float) -> str:
    """``model all-MiniLM-L6-v2 (int8 ONNX) ready in 0.1 s``: exported, or found in the cache."""
    return f"model {model_label(artifact.model_dir)} ({artifact.variant} ONNX) ready in {seconds:.1f} s"


def files_line(counts: dict[str, int]) -> str:
    """``files: 5 new, 0 changed, 12 unchanged, 0 deleted``."""
    return "files: " + ", ".join(f"{n:,} {kind}" for kind, n in counts.items())


def stream_line(result: StreamResult) -> str:
    """What the streaming stages did, over the wall time they took together."""
    parts = [f"{result.passages:,} passages from {result.documents:,} documents",
             f"{result.embedded:,} embedded, {result.reused:,} reused",
             f"{result.rows_written:,} rows loaded"]
    if result.rows_deleted:
        parts.append(f"{result.rows_deleted:,} deleted")
    if result.errors:
        parts.append(f"{len(result.errors):,} input error(s) skipped")
    return f"streamed in {result.wall:.1f} s: " + "; ".join(parts)


def skipped_lines(errors: list[InputError], run_dir: str, first: int = 10) -> list[str]:
    """One warning per skipped record (the first ``first`` of them), then where the rest are."""
    lines = [f"input error: {err}" for err in errors[:first]]
    if len(errors) > first:
        lines.append(f"... and {len(errors) - first:,} more input errors: every skipped record is "
                     f"in {run_dir}/{QUARANTINE}")
    return lines


def index_line(load: LoadResult, seconds: float) -> str:
    kind = load.index.get("index_type", "?")
    return f"index {kind} over {load.rows_in_milvus:,} rows in {seconds:.1f} s"


def check_line(result: CheckResult) -> str:
    line = f"checks: own text in the top 3 for {percent_text(result.sanity_self_top3)} of probes"
    recall = result.recall.get("recall@10 rescored")
    if recall is not None:
        line += f", recall@10 {recall:.3f} vs exact FP32"
    return f"{line} ({result.seconds:.1f} s)"
