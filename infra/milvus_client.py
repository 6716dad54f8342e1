"""The Milvus connection every store uses: one retry policy for transient failures, and the
column-wise writes ``MilvusClient`` lacks.

A transient failure (a busy or restarting server) is retried with exponential backoff for
``milvus.retry_s``; a refusal of the data itself (``is_refusal``) is not: sending it again cannot
help.
"""

from __future__ import annotations

import logging
from typing import Any

from pymilvus import MilvusClient, MilvusException
from tenacity import before_sleep_log, retry_if_exception, stop_before_delay, wait_exponential
from tenacity import retry as retrying

from vecpress.infra.lite_engine import LiteRefusal

log = logging.getLogger(__name__)
# Milvus refuses a row for what it holds (a VARCHAR over its max_length, a NaN, a wrong dim):
# code 1100 "invalid parameter" on a server, the message alone on Milvus Lite.
_REFUSAL_CODES = {1100}
_REFUSAL_WORDS = ("exceeds max", "invalid parameter", "not a number", "should divide the dim")


def is_refusal(exc: BaseException) -> bool:
    """Milvus refused the data itself: sending it again cannot help."""
    if isinstance(exc, LiteRefusal):  # the Lite engine's own refusal (``infra.lite_engine``)
        return True
    if not isinstance(exc, MilvusException):
        return False
    message = str(getattr(exc, "message", exc)).lower()
    return exc.code in _REFUSAL_CODES or any(word in message for word in _REFUSAL_WORDS)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, MilvusException) and not is_refusal(exc)


def retry_policy(seconds: float) -> Any:
    """Transient Milvus failures (a busy or restarting server) are retried with exponential
    backoff (0.5 s doubling to 8 s) for ``milvus.retry_s`` (90 s): a server restart (~20-30 s)
    is ridden out; a refused row is not retried. No attempt starts after ``seconds``: a wait
    that would pass them ends the retries (a 10 s limit took 17 s with the 8 s wait after it)."""
    return retrying(retry=retry_if_exception(_transient), stop=stop_before_delay(seconds),
                    wait=wait_exponential(multiplier=0.5, max=8), reraise=True,
                    before_sleep=before_sleep_log(log, logging.WARNING))


class RetryingClient:
    """A ``MilvusClient`` whose calls are retried with the one transient-failure policy
    (``retry_policy``, for ``milvus.retry_s``), connecting included, so no caller wraps a call itself.

    Not retried, because failing at once is their answer:

    - ``describe_alias``: its ``MilvusException`` is the normal "no such alias" reply of
      ``MilvusStore.point_alias``; retrying would wait 90 s before creating the alias.
    - ``search``, and ``query`` when called through ``plain`` (``MilvusStore.rows``): the search
      path. A searcher catches the ``MilvusException`` of a build dropped under it and retries once
      on the catalog's newer build; a 90 s retry would hold every search instead.
    - ``close``, ``prepare_index_params``, ``create_schema``: local, no call to the server.

    ``plain`` is the ``MilvusClient`` itself, for a call that must fail at once where the same
    method is otherwise retried. Attributes that are not methods pass through.
    """

    _NOT_RETRIED = frozenset({"describe_alias", "search", "close", "prepare_index_params",
                              "create_schema"})

    def __init__(self, uri: str, token: str, retry_s: float) -> None:
        self._retry = retry_policy(retry_s)
        # A dedicated connection is really closed by close(): a pooled one to Milvus Lite outlives
        # the store and holds the file lock.
        self.plain: MilvusClient = self._retry(MilvusClient)(uri=uri, token=token, dedicated=True)

    def upsert_columns(self, name: str, columns: list[dict[str, Any]], schema: dict[str, Any]
                       ) -> None:
        """One Upsert of column arrays (``[{"name", "type", "values"}]``, ``schema`` from
        ``describe_collection``), retried like every other call.

        This is the column-wise call pymilvus's ORM ``Collection.upsert`` makes; ``MilvusClient``
        takes rows only and converts each in Python: 48-50 µs a row against 12 µs for columns.
        A whole upsert took 57 against 20 µs a row on a Milvus server and 78 against 42 on Milvus
        Lite (benchmarks/results/upsert_columns.json).
        """
        handler = self.plain._get_connection()
        context = self.plain._generate_call_context()
        self._retry(handler.upsert)(name, columns, schema=schema, context=context)

    def replace_columns(self, name: str, columns: list[dict[str, Any]], schema: dict[str, Any],
                        pks: list[int]) -> None:
        """An upsert as delete + insert, retried as one: an insert whose reply was lost is
        deleted by the retry's delete, so each row is there once. Readers may miss the rows
        between the two calls (``MilvusStore._upsert_misroutes`` says when this is used)."""
        handler = self.plain._get_connection()

        def replace() -> None:
            self.plain.delete(name, ids=pks)
            handler.batch_insert(name, columns, schema=schema,
                                 context=self.plain._generate_call_context())

        self._retry(replace)()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy and pickle probe an instance whose __init__ has not run
            raise AttributeError(name)
        attr = getattr(self.plain, name)
        if name in self._NOT_RETRIED or not callable(attr):
            return attr
        return self._retry(attr)
