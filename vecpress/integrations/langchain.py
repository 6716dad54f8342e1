"""A LangChain retriever over a vecpress collection (``pip install "vecpress[langchain]"``).

    import vecpress
    from vecpress.integrations.langchain import VecpressRetriever

    kb = vecpress.open_collection("kb", storage_root="/srv/vecpress")
    retriever = VecpressRetriever(collection=kb, k=5, filter={"team": "t7"})
    docs = retriever.invoke("how do I rotate the logs?", filter="year >= 2020")

Each ``Document`` holds the passage's text, its metadata (``source``, ``doc_id``, ``chunk``,
``pk`` and the record's own keys) and its ``score``; its ``id`` is the passage's primary key. A
filter given at construction and one given to ``invoke`` both apply. Searching is synchronous
(the model and Milvus calls block); ``ainvoke`` runs it in a worker thread.
"""

from __future__ import annotations

import asyncio

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from vecpress.api import Collection
from vecpress.integrations.common import FilterLike, both, expression, hit_metadata


class VecpressRetriever(BaseRetriever):
    """The ``k`` passages of ``collection`` nearest a query, as LangChain documents."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    collection: Collection
    k: int = Field(default=4, ge=1)
    filter: FilterLike = None  # an expression (``team == "t7"``) or a dict of equalities
    rescore: bool = True

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, filter: FilterLike = None) -> list[Document]:
        hits = self.collection.search(query, self.k if k is None else k, rescore=self.rescore,
                                      filter=both(expression(self.filter), expression(filter)))[0]
        return [Document(page_content=h.text, id=str(h.pk),
                         metadata={**hit_metadata(h), "score": h.score}) for h in hits]

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None, filter: FilterLike = None
                                       ) -> list[Document]:
        return await asyncio.to_thread(self._get_relevant_documents, query,
                                       run_manager=run_manager.get_sync(), k=k, filter=filter)


__all__ = ["VecpressRetriever"]
