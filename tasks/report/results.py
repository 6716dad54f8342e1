"""What the check stage returns: a small record the flow adds to the run summary.

The streaming stages report through ``tasks/ingest/results.StreamResult``.

Each stage reports its own work (items, seconds, what it produced), so the flow never counts or
times anything itself and the summary is built in one place (``IngestSummary.add_*``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CheckResult:
    """Searches run after loading: own text in the top 3, and recall on held-out queries."""

    sanity_self_top3: float
    recall: dict[str, float]
    queries: int
    seconds: float
