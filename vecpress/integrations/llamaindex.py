"""A LlamaIndex retriever over a vecpress collection (``pip install "vecpress[llamaindex]"``).

    import vecpress
    from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
    from vecpress.integrations.llamaindex import VecpressRetriever

    kb = vecpress.open_collection("kb", storage_root="/srv/vecpress")
    retriever = VecpressRetriever(kb, k=5, filters=MetadataFilters(
        filters=[MetadataFilter(key="year", value=2020, operator=">=")]))
    nodes = retriever.retrieve("how do I rotate the logs?")

Each ``NodeWithScore`` holds a ``TextNode`` with the passage's text, its metadata (``source``,
``doc_id``, ``chunk``, ``pk`` and the record's own keys) and its primary key as ``id_``.
``aretrieve`` runs the search in a worker thread. ``filters`` takes LlamaIndex's
``MetadataFilters`` (nested, with and / or / not), a vecpress expression string or a dict of
equalities; all become one Milvus expression over metadata keys.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

from vecpress.api import Collection
from vecpress.integrations.common import expression, hit_metadata, literal, plain_key
from vecpress.tasks.search.filters import FilterError

_COMPARE = {FilterOperator.EQ: "==", FilterOperator.NE: "!=", FilterOperator.GT: ">",
            FilterOperator.GTE: ">=", FilterOperator.LT: "<", FilterOperator.LTE: "<=",
            FilterOperator.IN: "in", FilterOperator.NIN: "not in"}
# Operators over a metadata list: Milvus's JSON array functions.
_ARRAY = {FilterOperator.CONTAINS: "json_contains", FilterOperator.ANY: "json_contains_any",
          FilterOperator.ALL: "json_contains_all"}


def _one(item: MetadataFilter) -> str:
    key = plain_key(item.key)
    operator = FilterOperator(item.operator)
    if operator in _COMPARE:
        return f"{key} {_COMPARE[operator]} {literal(item.value)}"
    if operator in _ARRAY:
        return f"{_ARRAY[operator]}({key}, {literal(item.value)})"
    raise FilterError(f"the {operator.value!r} filter operator is not supported; use one of "
                      f"{', '.join(repr(o.value) for o in (*_COMPARE, *_ARRAY))}")


def metadata_filters(filters: MetadataFilters) -> str | None:
    """LlamaIndex filters as a vecpress expression: ``and`` / ``or`` join the items, ``not``
    negates their conjunction."""
    parts = [_one(f) if isinstance(f, MetadataFilter) else metadata_filters(f)
             for f in filters.filters]
    kept = [f"({p})" for p in parts if p]
    if not kept:
        return None
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if condition is FilterCondition.NOT:
        return "not (" + " and ".join(kept) + ")"
    return f" {condition.value} ".join(kept)


class VecpressRetriever(BaseRetriever):
    """The ``k`` passages of ``collection`` nearest a query, as LlamaIndex nodes with scores."""

    def __init__(self, collection: Collection, k: int = 4,
                 filters: MetadataFilters | str | dict[str, Any] | None = None,
                 rescore: bool = True, **kwargs: Any) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        self.collection, self.k, self.rescore = collection, k, rescore
        self.expression = (metadata_filters(filters) if isinstance(filters, MetadataFilters)
                           else expression(filters))
        super().__init__(**kwargs)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.collection.search(query_bundle.query_str, self.k, rescore=self.rescore,
                                      filter=self.expression)[0]
        return [NodeWithScore(node=TextNode(id_=str(h.pk), text=h.text, metadata=hit_metadata(h)),
                              score=h.score) for h in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The search blocks (the model, Milvus): run it in a worker thread, not the loop."""
        return await asyncio.to_thread(self._retrieve, query_bundle)


__all__ = ["VecpressRetriever", "metadata_filters"]
