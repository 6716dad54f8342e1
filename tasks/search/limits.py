"""Every search is bounded before any work starts (``search.*`` settings).

One unbounded request (1,024 queries × k = 1,024) once grew the HTTP server to 23 GB: the limits
below are checked on the request as given, so an oversized one costs microseconds, not memory.
The Python API raises ``LimitExceeded`` (a ``ValueError``); HTTP answers 413 with the same text.
"""

from __future__ import annotations

from collections.abc import Sequence

from vecpress.infra.bounds import MAX_K, MILVUS_TOPK
from vecpress.infra.search_settings import SearchSettings


class LimitExceeded(ValueError):
    """A search over one of the ``search.*`` bounds; ``setting`` names the bound."""

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


def env_name(setting: str) -> str:
    """``search.max_hits`` -> ``VECPRESS_SEARCH__MAX_HITS``."""
    return "VECPRESS_" + setting.upper().replace(".", "__")


def _exceeded(what: str, setting: str, limit: int, then: str) -> LimitExceeded:
    return LimitExceeded(f"{what}: the limit is {limit:,} (setting {setting}, "
                         f"{env_name(setting)}); {then}", setting)


def check_search(texts: Sequence[object], k: int, limits: SearchSettings) -> None:
    """Raise ``LimitExceeded`` (or ``ValueError`` for a malformed search) before any work."""
    check_shape(len(texts), k, limits)
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"query {i} is {'empty' if isinstance(text, str) else type(text).__name__}"
                             "; give the text to search for")
        if len(text) > limits.max_query_bytes:  # UTF-8 takes at least a byte per character
            size = len(text.encode("utf-8", "surrogatepass"))
        else:
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise ValueError(f"query {i} is not valid Unicode: a lone surrogate at character "
                                 f"{exc.start}; send UTF-8 text") from None
        if size > limits.max_query_bytes:
            raise _exceeded(f"query {i} has {size:,} bytes", "search.max_query_bytes",
                            limits.max_query_bytes, "the model reads only its first few hundred "
                            "tokens; send that part")


def check_shape(queries: int, k: int, limits: SearchSettings) -> None:
    """``queries`` searches of ``k`` results each: within ``max_queries`` and ``max_hits``."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ValueError(f"k={k!r}: give 1 to {MAX_K:,} results per query (Milvus returns at "
                         f"most {MILVUS_TOPK:,} candidates a query, and a search rescores up to 16 "
                         "a result); for more, page with a filter or export the collection")
    if queries > limits.max_queries:
        raise _exceeded(f"{queries:,} queries in one search", "search.max_queries",
                        limits.max_queries, "send them in several searches")
    if queries * k > limits.max_hits:
        raise _exceeded(f"{queries:,} queries × k={k} = {queries * k:,} results",
                        "search.max_hits", limits.max_hits, "ask fewer results per query or "
                        "send fewer queries per search")


def batch_size(k: int, limits: SearchSettings) -> int:
    """How many queries one search may carry at ``k`` results each (``vecpress search
    --queries`` sends a larger file in batches of this size)."""
    return max(1, min(limits.max_queries, limits.max_hits // k))
