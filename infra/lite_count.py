"""Counting the rows of a Milvus Lite collection that match a filter, without a record per row.

Milvus Lite 3 counts a filter (its ``count(*)``, or ``query``) by building the mask of live,
matching rows (the newest version of each key, deleted keys left out, the filter applied), then
a Python dict for every row that passes: a filter matching 1,029,323 rows took 18.95 s and
424 MB more at its peak, and the mask of it counted here 1.71 s and 188 MB
(``benchmarks/lite_count.py``, ``results/lite_count.json``). Here the same two engine steps
build the same mask and its set bits are counted.

This reaches past Lite's public interface (as ``lite_arrow`` does), so it is taken only on an
engine with the internals used; otherwise the caller counts through ``query``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_ENGINE_PARTS = ("_require_loaded", "_compile_filter", "_indexed_filter_plan", "_read_snapshot",
                 "_memtable", "_vector_name")


def count_matching(collection: Any, expression: str) -> int | None:
    """Rows of the Lite ``collection`` that ``query(expression)`` would return ("": every live
    row), counted; None where the engine lacks the internals used. A malformed expression raises
    as ``query`` does."""
    try:
        from milvus_lite.search.assembler import assemble_candidates
        from milvus_lite.search.bitmap import build_valid_mask
    except ImportError:
        return None
    if not all(hasattr(collection, part) for part in _ENGINE_PARTS):
        log.debug("Milvus Lite without the expected internals: counted through query")
        return None
    collection._require_loaded()
    compiled = collection._compile_filter(expression) if expression else None
    segments, deltas = collection._read_snapshot()
    pks, seqs, _, _, matching = assemble_candidates(
        segments=segments, memtable=collection._memtable, vector_field=collection._vector_name,
        partition_names=None, filter_compiled=compiled,
        indexed_filter_plan=collection._indexed_filter_plan(compiled))
    if not pks:
        return 0
    live = build_valid_mask(pks, seqs, deltas, filter_mask=matching, memtable=collection._memtable)
    return int(np.count_nonzero(live))
