"""The HTTP routes of ``vecpress api``: search, describe, health and readiness.

Every request is bounded before work starts (``guards.Guard``; ``search.*`` limits: 413
naming the setting), then queued for micro-batching (``SearchBatcher``: 503 with Retry-After when
too much waits, 504 past the deadline). Milvus failing is 503 with its reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from vecpress.api import MAX_K, Collection, LimitExceeded
from vecpress.infra.milvus_reads import is_milvus_error
from vecpress.tasks.search.batcher import DeadlineExceeded, Overloaded, SearchBatcher
from vecpress.tasks.search.filters import translate
from vecpress.tasks.search.limits import check_search
from vecpress.web.guards import NO_KEY, Guard, KeyCheck, Receive, Scope, Send
from vecpress.web.served import Served


class SearchRequest(BaseModel):
    """Queries to search; give ``query`` or ``queries``."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(None, description="One query text.")
    queries: list[str] | None = Field(None, description="Several query texts (at most "
                                      "search.max_queries; queries × k at most search.max_hits).")
    k: Annotated[int, Field(ge=1, le=MAX_K, description="Results per query.")] = 10
    rescore: bool = Field(True, description="Rescore candidates with the archived vectors.")
    filter: str | None = Field(None, description='A Milvus boolean expression over metadata keys '
                               'and passage fields, e.g. team == "t7" and year >= 2020: only '
                               'matching passages are returned (at most search.max_filter_bytes).')


class HitOut(BaseModel):
    rank: int
    score: float
    doc_id: str
    chunk: int
    source: str
    text: str
    pk: int
    metadata: dict[str, Any] = Field(default_factory=dict, description="The record's other fields.")


class SearchResponse(BaseModel):
    collection: str
    results: list[list[HitOut]] = Field(description="One ranked list per query, in order.")
    note: str | None = Field(None, description="Only when a filter matched no passage and looks "
                             "like a slip: why (a metadata key named like a passage field, a "
                             "number compared with text or the other way round) and what to write.")


class ErrorOut(BaseModel):
    detail: str
    setting: str | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No or a wrong API key."},
    404: {"model": ErrorOut, "description": "No such collection on this server."},
    413: {"model": ErrorOut, "description": "Over a limit; `setting` names it."},
    503: {"model": ErrorOut, "description": "Loading, overloaded (Retry-After) or Milvus down."},
    504: {"model": ErrorOut, "description": "Not answered within api.timeout_s."},
}


BEARER = HTTPBearer(auto_error=False, description="Authorization: Bearer API_KEY")
HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: API_KEY")


def _presented(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
               key: Annotated[str | None, Depends(HEADER)]) -> str | None:
    """The key a request presents (module level: FastAPI resolves these annotations by name)."""
    return credentials.credentials if credentials else key


def create_app(served: Served, keys: KeyCheck) -> FastAPI:
    """The app serving ``served``; it opens them in the background when it starts and stops
    their batchers when it stops (the caller closes the collections)."""
    api = served.api

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        served.start()
        yield
        served.stop()

    names = ", ".join(f"'{n}'" for n in served.names)
    app = FastAPI(title="vecpress search", version="2", lifespan=lifespan,
                  description=f"Compressed vector search over {names}.")
    def authorised(presented: Annotated[str | None, Depends(_presented)]) -> None:
        # ``Guard`` refused a wrong key before the body was read; this documents the schemes.
        if not keys.accepts(presented):
            raise HTTPException(401, NO_KEY, {"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorised)]

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"description": "Still loading, or loading failed."}})
    def readyz() -> JSONResponse:
        """Readiness: every collection's model and index are loaded."""
        body = {"ready": served.ready, "collections": served.names, "loading": served.loading}
        return JSONResponse(body, status_code=200 if served.ready else 503)

    @app.get("/collections", dependencies=guarded, responses=ERRORS)
    def collections() -> dict[str, list[str]]:
        return {"collections": served.names}

    @app.get("/stats", dependencies=guarded, responses=ERRORS)
    def stats() -> dict[str, Any]:
        """This server's counters, without asking Milvus: per collection and the shared budget."""
        return {"queued_hits": served.budget.used, "max_queued_hits": served.budget.limit,
                "collections": {name: _counters(served, name) for name in served.batchers}}

    @app.post("/search", response_model=SearchResponse, dependencies=guarded, responses=ERRORS)
    async def search_default(request: SearchRequest) -> JSONResponse:
        """Search the server's first (or only) collection."""
        return await _search(served, served.default, request)

    @app.post("/collections/{name}/search", response_model=SearchResponse,
              dependencies=guarded, responses=ERRORS)
    async def search(name: str, request: SearchRequest) -> JSONResponse:
        return await _search(served, name, request)

    @app.get("/collections/{name}", dependencies=guarded, responses=ERRORS)
    def describe(name: str) -> dict[str, Any]:
        """The serving build, its size, model, codec and index, and this server's counters."""
        collection = _collection(served, name)
        try:
            info = vars(collection.info())
        except Exception as exc:
            raise _unavailable(exc, collection) from exc
        return info | {"serving": _counters(served, name)}

    @app.exception_handler(LimitExceeded)
    async def over_limit(_: Request, exc: LimitExceeded) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "setting": exc.setting}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming where and what, without echoing the input (it may be megabytes, or text
        JSON cannot encode)."""
        return JSONResponse({"detail": [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()[:20]]}, status_code=422)

    app.add_middleware(Guard, api=api, keys=keys)
    return app


def _counters(served: Served, name: str) -> dict[str, int]:
    batcher, cache = served.batchers[name], served.collections[name].query_cache
    return {"batches": batcher.batches, "queries": batcher.batched_queries,
            "dropped": batcher.dropped, "cache_hits": cache.hits, "cache_misses": cache.misses,
            "cache_size": len(cache)}


class _Answer(JSONResponse):
    """A search's answer; its hits leave the server's budget once the body has been sent (or the
    client has gone): a slow reader keeps them counted."""

    def __init__(self, content: Any, release: Callable[[], None]) -> None:
        self._release = release
        try:
            super().__init__(content)
        except BaseException:
            release()
            raise

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _collection(served: Served, name: str) -> Collection:
    if name not in served.names:
        raise HTTPException(404, f"this server serves {', '.join(served.names)}; not '{name}'")
    collection = served.collections.get(name)
    if collection is None or name not in served.batchers:
        raise HTTPException(503, f"'{name}' is still loading; retry shortly",
                            {"Retry-After": "1"})
    return collection


async def _search(served: Served, name: str, request: SearchRequest) -> JSONResponse:
    collection = _collection(served, name)
    batcher: SearchBatcher = served.batchers[name]
    texts = _texts(request)
    try:
        check_search(texts, request.k, collection.settings.search)
        # Its syntax, before any work (whether the collection has its keys: when searched).
        translate(request.filter or "", True, collection.settings.search.max_filter_bytes)
    except LimitExceeded:
        raise  # 413, naming the setting
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if not texts:
        return JSONResponse({"collection": name, "results": []})
    try:
        cost = served.budget.admit(len(texts), request.k)
    except Overloaded:
        raise _overloaded() from None
    try:
        found = await _searched(served, batcher, texts, request, collection)
        note = await _why_nothing_matched(collection, request.filter, found)
    except BaseException:
        served.budget.release(cost)
        raise
    return _Answer({"collection": name, "results": [
        [{"rank": r, "score": round(h.score, 6), "doc_id": h.doc_id, "chunk": h.chunk,
          "source": h.source, "text": h.text, "pk": h.pk, "metadata": h.metadata}
         for r, h in enumerate(hits, 1)]
        for hits in found]} | ({"note": note} if note else {}), lambda: served.budget.release(cost))


async def _why_nothing_matched(collection: Collection, filter: str | None,
                               found: list[list[Any]]) -> str | None:
    """The CLI's note for a filter that kept nothing (``Collection.why_nothing_matched``: ~1,000
    rows' metadata read once, and None rather than a failure), off the event loop; None when
    something matched."""
    if not filter or any(found):
        return None
    return await asyncio.to_thread(collection.why_nothing_matched, filter)


async def _searched(served: Served, batcher: SearchBatcher, texts: list[str],
                    request: SearchRequest, collection: Collection) -> list[list[Any]]:
    try:
        return await batcher.search(texts, request.k, request.rescore, request.filter or "")
    except Overloaded:
        raise _overloaded() from None
    except DeadlineExceeded:
        raise HTTPException(504, f"not answered within {served.api.timeout_s:g} s (setting "
                            "api.timeout_s, VECPRESS_API_TIMEOUT_S); the search was dropped") from None
    except asyncio.CancelledError:
        raise
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    except Exception as exc:
        raise _unavailable(exc, collection) from exc


def _overloaded() -> HTTPException:
    """503 for a request the hit budget (or a stopping server) turns away."""
    return HTTPException(503, "too many searches are waiting; retry shortly",
                         {"Retry-After": str(Overloaded.retry_after_s)})


def _texts(request: SearchRequest) -> list[str]:
    if (request.query is None) == (request.queries is None):
        raise HTTPException(422, "give either 'query' (a text) or 'queries' (a list of texts)")
    return [request.query] if request.query is not None else list(request.queries or [])


def _unavailable(exc: Exception, collection: Collection) -> Exception:
    """A Milvus failure is the service's, not the request's: 503 with Milvus's reason."""
    if is_milvus_error(exc):
        reason = getattr(exc, "message", "") or str(exc)
        return HTTPException(503, f"Milvus at {collection.settings.milvus.uri} failed: {reason}")
    return exc
