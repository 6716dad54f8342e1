"""Micro-batching of concurrent searches, with bounded work in flight (as TEI and Infinity do).

Requests arrive on an asyncio loop (the HTTP server's). A few worker threads (``concurrency``)
each take a batch: the queries of every waiting request, up to ``max_batch_queries``, embedded in
one model call, then searched per (k, rescore) group, and the results handed back to each
request. An idle server starts a request's batch at once; while every thread is busy, requests
wait and so form the next batch (plus ``batch_wait_ms`` to gather a few more).

Bounds: a request is admitted against one ``HitBudget`` shared by every collection of the server
(its hits, queries × k, plus its queries) and holds its share until its answer has been sent
(``release``): past ``max_queued_hits``, ``Overloaded`` (HTTP 503 with Retry-After). Each request
has a deadline (``DeadlineExceeded``: 504); one past it is dropped before its batch starts.
Threads are daemons: a batch still running at exit does not hold the process.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from vecpress.infra.search_settings import ApiSettings, SearchSettings
from vecpress.tasks.search.searcher import Hit


class Target(Protocol):
    """What a batch searches: ``vecpress.api.Collection``."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray: ...

    def search_embeddings(self, embeddings: np.ndarray, k: int = 10, *, rescore: bool = True,
                          filter: str | None = None
                          ) -> list[list[Hit]]: ...


class Overloaded(Exception):
    """More work is waiting than ``max_queued_hits`` allows (or the server is stopping)."""

    retry_after_s = 1


class DeadlineExceeded(Exception):
    """A request was not answered within its deadline; its work was dropped if not started."""


class HitBudget:
    """Hits admitted and not yet answered, across the collections of one server (loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0

    def admit(self, queries: int, k: int) -> int:
        cost = queries * (k + 1)
        if self.used + cost > self.limit:
            raise Overloaded()
        self.used += cost
        return cost

    def release(self, cost: int) -> None:
        self.used -= cost


@dataclass(eq=False)
class _Job:
    texts: list[str]
    k: int
    rescore: bool
    filter: str
    future: asyncio.Future[list[list[Hit]]]
    started: bool = False
    results: list[list[Hit]] = field(default_factory=list)


class SearchBatcher:
    """Batches the searches of one collection; create and use it on the serving event loop."""

    def __init__(self, target: Target, api: ApiSettings, limits: SearchSettings,
                 budget: HitBudget) -> None:
        self.target, self.api, self.limits, self.budget = target, api, limits, budget
        self.batches = self.batched_queries = self.dropped = 0
        self._loop = asyncio.get_running_loop()
        self._pending: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._idle = api.concurrency
        self._closed = False
        self._work: queue.SimpleQueue[list[_Job] | None] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._worker, daemon=True,
                                          name=f"vecpress-search-{i}")
                         for i in range(api.concurrency)]
        for thread in self._threads:
            thread.start()
        self._dispatcher = self._loop.create_task(self._dispatch())

    async def search(self, texts: list[str], k: int, rescore: bool = True, filter: str = ""
                     ) -> list[list[Hit]]:
        """The hits of ``texts`` (already checked against ``search.*`` and admitted against the
        budget), or ``Overloaded`` / ``DeadlineExceeded``."""
        if self._closed:
            raise Overloaded()
        job = _Job(texts, k, rescore, filter, self._loop.create_future())
        self._pending.append(job)
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.api.timeout_s)
        except TimeoutError:
            raise DeadlineExceeded() from None
        finally:
            if not job.started and job in self._pending:  # its work is dropped
                self._pending.remove(job)
                self.dropped += 1
            if not job.future.done():  # its batch runs on; nobody will read its outcome
                job.future.add_done_callback(_forget)

    def close(self) -> None:
        """Stop taking batches (on the loop): requests waiting and arriving get ``Overloaded``;
        batches already running finish."""
        if self._closed:
            return
        self._closed = True
        self._dispatcher.cancel()
        while self._pending:
            job = self._pending.popleft()
            if not job.future.done():
                job.future.set_exception(Overloaded())
        for _ in self._threads:
            self._work.put(None)

    async def _dispatch(self) -> None:
        wait_s = self.api.batch_wait_ms / 1000
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending and self._idle:
                if wait_s and self._idle < self.api.concurrency:
                    await asyncio.sleep(wait_s)  # others busy: let a few more requests join
                batch = self._take()
                if batch:
                    self._idle -= 1
                    self._work.put(batch)

    def _take(self) -> list[_Job]:
        """Waiting jobs, oldest first, up to ``max_batch_queries`` (at least one job)."""
        batch: list[_Job] = []
        size = 0
        while self._pending and (not batch or size + len(self._pending[0].texts)
                                 <= self.api.max_batch_queries):
            job = self._pending.popleft()
            job.started = True
            batch.append(job)
            size += len(job.texts)
        return batch

    def _worker(self) -> None:
        while (batch := self._work.get()) is not None:
            error: Exception | None = None
            try:
                self._run(batch)
            except StopIteration as exc:  # a future cannot hold it
                error = RuntimeError(f"the search failed: {exc!r}")
            except Exception as exc:  # handed to every request of the batch
                error = exc
            except BaseException as exc:  # not for a request task to re-raise (SystemExit...)
                error = RuntimeError(f"the search failed: {exc!r}")
            try:
                self._loop.call_soon_threadsafe(self._finish, batch, error)
            except RuntimeError:  # the loop is closed: the server has stopped
                return

    def _run(self, batch: list[_Job]) -> None:
        """One model call for the batch, one search per group of compatible jobs."""
        vectors = self.target.embed_queries([t for job in batch for t in job.texts])
        rows: dict[int, np.ndarray] = {}
        offset = 0
        for job in batch:
            rows[id(job)] = vectors[offset : offset + len(job.texts)]
            offset += len(job.texts)
        for group in self._groups(batch):
            found = self.target.search_embeddings(
                np.concatenate([rows[id(job)] for job in group]), group[0].k,
                rescore=group[0].rescore, filter=group[0].filter)
            start = 0
            for job in group:
                job.results = found[start : start + len(job.texts)]
                start += len(job.texts)

    def _groups(self, batch: list[_Job]) -> list[list[_Job]]:
        """Jobs of equal (k, rescore, filter), split to stay within one search's bounds."""
        by_kind: dict[tuple[int, bool, str], list[list[_Job]]] = {}
        for job in batch:
            parts = by_kind.setdefault((job.k, job.rescore, job.filter), [[]])
            queries = sum(len(j.texts) for j in parts[-1]) + len(job.texts)
            if parts[-1] and (queries > self.limits.max_queries
                              or queries * job.k > self.limits.max_hits):
                parts.append([])
            parts[-1].append(job)
        return [part for parts in by_kind.values() for part in parts]

    def _finish(self, batch: list[_Job], error: Exception | None) -> None:
        try:
            self.batches += 1
            for job in batch:
                self.batched_queries += len(job.texts)
                if job.future.done():
                    continue
                if error is None:
                    job.future.set_result(job.results)
                else:
                    job.future.set_exception(error)
        finally:
            self._idle += 1
            self._wake.set()


def _forget(future: asyncio.Future[list[list[Hit]]]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" log
