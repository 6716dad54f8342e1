"""The collections one ``vecpress api`` process serves, opened in the background.

The server listens at once; ``/readyz`` says 503 until every collection's model, codec and Milvus
collection are loaded (a first start may export nothing but still loads a model and a Milvus
index: seconds). A collection that cannot be opened stops the server, and the command exits with
that error's code. Each open collection gets its own ``SearchBatcher``; they share one
``HitBudget``, so the server's work in flight is bounded however many collections it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

from vecpress.api import Collection
from vecpress.infra.search_settings import ApiSettings
from vecpress.tasks.search.batcher import HitBudget, SearchBatcher


class Served:
    """Collections by name, their batchers, and whether all are loaded."""

    def __init__(self, names: list[str], open_one: Callable[[str], Collection],
                 api: ApiSettings) -> None:
        if not names:
            raise ValueError("no collection to serve")
        self.names, self.api = list(dict.fromkeys(names)), api
        self.default = names[0]
        self.collections: dict[str, Collection] = {}
        self.batchers: dict[str, SearchBatcher] = {}
        self.budget = HitBudget(api.max_queued_hits)
        self.error: BaseException | None = None
        self.on_error: Callable[[], None] = lambda: None
        self._open_one = open_one
        self._closed = self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return len(self.batchers) == len(self.names) and self.error is None

    @property
    def loading(self) -> list[str]:
        return [n for n in self.names if n not in self.batchers]

    def start(self) -> None:
        """Open the collections in a background thread (call on the serving loop)."""
        loop = self._loop = asyncio.get_running_loop()
        threading.Thread(target=self._load, args=(loop,), daemon=True,
                         name="vecpress-load").start()

    def _load(self, loop: asyncio.AbstractEventLoop) -> None:
        for name in self.names:
            try:
                collection = self._open_one(name)
            except BaseException as exc:  # SystemExit from a CLI error too: the server stops
                self.error = exc
                self._call(loop, self.on_error)
                return
            with self._lock:
                if self._closed:  # the server stopped while this one was loading
                    collection.close()
                    return
                self.collections[name] = collection
            self._call(loop, self._attach, name, collection)

    @staticmethod
    def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: the server has stopped
            loop.call_soon_threadsafe(fn, *args)

    def _attach(self, name: str, collection: Collection) -> None:
        if not self._stopping:
            self.batchers[name] = SearchBatcher(collection, self.api, collection.settings.search,
                                                self.budget)

    def stop_soon(self) -> None:
        """``stop`` on the serving loop; safe from a signal handler or another thread."""
        if self._loop is not None:
            self._call(self._loop, self.stop)

    def stop(self) -> None:
        """Stop batching, on the loop, as soon as the server is told to stop: requests waiting
        and arriving get 503; batches already running finish."""
        self._stopping = True
        for batcher in self.batchers.values():
            batcher.close()

    def close(self) -> None:
        """Close every open collection (a Milvus Lite file is released)."""
        with self._lock:
            self._closed = True
            opened, self.collections = list(self.collections.values()), {}
        for collection in opened:
            collection.close()
