"""How many rows a large filter keeps, remembered for a while: a repeated filter that keeps more
than ``search.filter_exact_rows`` rows goes straight to the index, without counting again.

Counting is the slow part of a filtered search on Milvus Lite, which materialises every match:
1.6-1.9 s for a filter keeping 25,570 of 51,158 rows on a typed bool field, against ~0.1 s for
the search itself (``results/filtered_latency_lite_51158_*``). A count only widens the probes
(``filters.widened_nprobe``), so one a few minutes old is good enough; small filters are never
taken from here, their matching keys are fetched every time. Keys are (build, expression): a new
build starts afresh. Bounded in entries (LRU) and age; thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class FilterCounts:
    """(matches, rows) of large filters per (build, expression), for ``ttl_s`` (0: off)."""

    def __init__(self, size: int = 1024, ttl_s: float = 300.0) -> None:
        self.size, self.ttl_s = size, ttl_s
        self._counts: OrderedDict[tuple[str, str], tuple[float, int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    def get(self, build: str, expression: str) -> tuple[int, int] | None:
        """(matches, rows) counted less than ``ttl_s`` ago, else None."""
        with self._lock:
            found = self._counts.get((build, expression))
            if found is None:
                return None
            if time.monotonic() - found[0] >= self.ttl_s:
                del self._counts[(build, expression)]
                return None
            self._counts.move_to_end((build, expression))
            return found[1], found[2]

    def put(self, build: str, expression: str, matches: int, rows: int) -> None:
        if self.size == 0 or self.ttl_s <= 0:
            return
        with self._lock:
            self._counts[(build, expression)] = (time.monotonic(), matches, rows)
            self._counts.move_to_end((build, expression))
            while len(self._counts) > self.size:
                self._counts.popitem(last=False)
