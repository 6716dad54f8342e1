"""The HTTP search endpoint (``vecpress api``): one open collection behind a small FastAPI app.

``POST /search`` takes JSON queries and returns ranked hits with their texts and sources;
``GET /collections/{name}`` describes the collection; ``GET /healthz`` answers while it is open;
the OpenAPI page is at ``/docs``. Searches run in FastAPI's thread pool on the one shared
``Collection`` (model session, codec and rescoring vectors loaded once).

Milvus Lite allows one process per file: while this server holds a Lite file, an ingest of the
same file waits for it (exit code 3 after its retries). Serve from a Milvus server to search
during ingests.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from vecpress.api import MAX_K, Collection


class SearchRequest(BaseModel):
    """Queries to search; give ``query`` or ``queries``."""

    query: str | None = Field(None, description="One query text.")
    queries: list[str] | None = Field(None, max_length=1024, description="Several query texts.")
    k: Annotated[int, Field(ge=1, le=MAX_K, description="Results per query.")] = 10
    rescore: bool = Field(True, description="Rescore candidates with the archived vectors.")


class HitOut(BaseModel):
    rank: int
    score: float
    doc_id: str
    chunk: int
    source: str
    text: str
    pk: int


class SearchResponse(BaseModel):
    collection: str
    results: list[list[HitOut]] = Field(description="One ranked list per query, in order.")


def create_app(collection: Collection) -> FastAPI:
    """The app serving ``collection``; the caller closes the collection when the app stops."""
    app = FastAPI(title="vecpress search", version="1",
                  description=f"Compressed vector search over the '{collection.name}' collection.")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "collection": collection.name}

    @app.post("/search", response_model=SearchResponse)
    def search(request: SearchRequest) -> SearchResponse:
        texts = _texts(request)
        try:
            found = collection.search(texts, request.k, rescore=request.rescore)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        except Exception as exc:
            raise _unavailable(exc, collection) from exc
        return SearchResponse(collection=collection.name, results=[
            [HitOut(rank=r, score=round(h.score, 6), doc_id=h.doc_id, chunk=h.chunk,
                    source=h.source, text=h.text, pk=h.pk) for r, h in enumerate(hits, 1)]
            for hits in found])

    @app.get("/collections/{name}")
    def describe(name: str) -> dict[str, Any]:
        if name != collection.name:
            raise HTTPException(404, f"this server serves '{collection.name}', not '{name}'")
        try:
            info = collection.info()
        except Exception as exc:
            raise _unavailable(exc, collection) from exc
        return vars(info)

    return app


def _texts(request: SearchRequest) -> list[str]:
    if (request.query is None) == (request.queries is None):
        raise HTTPException(422, "give either 'query' (a text) or 'queries' (a list of texts)")
    return [request.query] if request.query is not None else list(request.queries or [])


def _unavailable(exc: Exception, collection: Collection) -> Exception:
    """A Milvus failure is the service's, not the request's: 503 with Milvus's reason."""
    if type(exc).__module__.startswith("pymilvus"):
        reason = getattr(exc, "message", "") or str(exc)
        return HTTPException(503, f"Milvus at {collection.settings.milvus.uri} failed: {reason}")
    return exc
