"""What both framework retrievers share: a hit's metadata, and filters written as data.

Frameworks pass filters as data (a dict of equalities, LlamaIndex's ``MetadataFilters``);
vecpress searches a Milvus boolean expression over metadata keys (``tasks.search.filters``).
Values become literals of that language here, so a filter value is data and never code: a
string holding quotes or ``or`` stays one string.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from vecpress.tasks.search.filters import FilterError
from vecpress.tasks.search.searcher import Hit

FilterLike = str | Mapping[str, Any] | None


def literal(value: Any) -> str:
    """``value`` as a Milvus expression literal: a string, number, boolean or list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FilterError(f"a filter value must be a finite number, not {value}")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    raise FilterError(f"a filter value must be a string, number, boolean or list, not "
                      f"{type(value).__name__} ({value!r})")


def plain_key(key: Any) -> str:
    """``key`` as a name the expression can hold; ``FilterError`` for anything else."""
    if not str(key).isidentifier():
        raise FilterError(f"filter key {key!r} is not a plain name (letters, digits, _)")
    return str(key)


def equalities(fields: Mapping[str, Any]) -> str:
    """``{"team": "t7", "year": [2020, 2021]}`` as ``team == "t7" and year in [2020, 2021]``."""
    parts = []
    for key, value in fields.items():
        op = "in" if isinstance(value, list | tuple) else "=="
        parts.append(f"{plain_key(key)} {op} {literal(value)}")
    return " and ".join(parts)


def expression(filter: FilterLike) -> str | None:
    """A filter given as an expression (kept as written) or as a dict of equalities."""
    if filter is None or isinstance(filter, str):
        return filter or None
    if isinstance(filter, Mapping):
        return equalities(filter) or None
    raise FilterError(f"a filter is an expression string or a dict of key: value, not "
                      f"{type(filter).__name__}")


def both(*expressions: str | None) -> str | None:
    """The retriever's own filter and the call's, both applied."""
    kept = [e for e in expressions if e]
    if len(kept) < 2:
        return kept[0] if kept else None
    return " and ".join(f"({e})" for e in kept)


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """The record's metadata plus where the passage came from. vecpress's own names (source,
    doc_id, chunk, pk) mean what they mean in a filter, so they win over metadata keys of the
    same names; those stay readable on ``Collection.search``'s ``Hit.metadata``."""
    return {**hit.metadata, "source": hit.source, "doc_id": hit.doc_id, "chunk": hit.chunk,
            "pk": hit.pk}
