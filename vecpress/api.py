"""The Python API: search a collection, or ingest into one, from an application.

    import vecpress

    with vecpress.open_collection("kb", storage_root="/srv/vecpress") as kb:
        for hit in kb.search("how do I rotate the logs?", k=5)[0]:
            print(f"{hit.score:.3f}  {hit.source}  {hit.text[:80]}")

A collection remembers where it lives (its Milvus URI and model cache are in its catalog), so its
name and storage root are enough. One open collection serves many searches from many threads:
the model session, the codec and the rescoring vectors are loaded once, and it follows the
collection as ingests and rebuilds commit. ``vecpress search`` is a thin command over this class;
``vecpress.ingest`` runs the same Prefect flow as ``vecpress ingest``.
"""

from __future__ import annotations

import inspect
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from vecpress.infra import storage
from vecpress.infra.bounds import MAX_K
from vecpress.infra.settings import Settings
from vecpress.tasks.search.filters import FilterError
from vecpress.tasks.search.limits import LimitExceeded, check_search, check_shape
from vecpress.tasks.search.opening import open_searcher
from vecpress.tasks.search.query_cache import QueryEmbeddingCache
from vecpress.tasks.search.searcher import Hit, Searcher

if TYPE_CHECKING:
    from vecpress.tasks.report.summary import IngestSummary

FOOTPRINT_TTL_S = 60.0  # info() measures the tiers again after this (a listing of the root)

__all__ = ["MAX_K", "Collection", "CollectionInfo", "FilterError", "Hit", "LimitExceeded", "ingest",
           "open_collection"]

@dataclass(frozen=True)
class CollectionInfo:
    """What serves a collection now, and how it was built."""

    name: str
    build: str  # the Milvus collection serving the name (``<name>__v<N>``)
    milvus_uri: str
    storage_root: str
    rows: int  # passages in Milvus
    model: str  # the exported model's cache directory name (model, variant, content key)
    model_variant: str
    embedding_dim: int
    codec: dict[str, Any]  # the codec's training report: kind, PCA dim, PQ shape, errors
    index: dict[str, Any]  # Milvus's description of the vector index
    bytes_per_vector: dict[str, float]
    last_run: dict[str, Any] | None = field(default=None)  # the newest run summary, if any
    typed_fields: dict[str, str] = field(default_factory=dict)  # metadata keys with own fields
    similarity: str = "cosine"  # the model's similarity function: what scores are (cosine, dot…)
    # Measured bytes of each tier, and per passage (``tasks.search.footprint``); at most
    # FOOTPRINT_TTL_S old.
    footprint: dict[str, Any] = field(default_factory=dict)


class Collection:
    """An open collection. Use ``open_collection``; close it (or use ``with``) when done: a
    Milvus Lite file stays locked by this process until then."""

    def __init__(self, searcher: Searcher, settings: Settings) -> None:
        self._searcher, self.settings = searcher, settings
        self.query_cache = QueryEmbeddingCache(settings.search.query_cache_size)
        self._footprint: tuple[float, str, dict[str, Any]] = (0.0, "", {})

    @property
    def name(self) -> str:
        return self.settings.collection

    def search(self, queries: str | Sequence[str], k: int = 10, *, rescore: bool = True,
               filter: str | None = None) -> list[list[Hit]]:
        """The ``k`` best passages for each query, best first (one list per query).

        Scores estimate the model's own similarity: cosine for most models, the dot product or
        the negated Euclidean distance where its sentence-transformers config declares that
        (``info().similarity``), as ``SentenceTransformer.similarity`` gives. A query longer
        than the model's window is searched by its start. ``rescore=False`` ranks by the
        compressed index alone (faster, less exact).
        ``filter``: a Milvus boolean expression over metadata keys and the passage fields
        (``team == "t7" and year >= 2020``); only matching passages are returned, and a
        malformed one raises ``FilterError`` (a ``ValueError``) saying where.
        Bounded by ``settings.search`` (queries, bytes per query, queries × k): a search over a
        bound raises ``LimitExceeded`` (a ``ValueError``) naming the setting, before any work.
        """
        texts = [queries] if isinstance(queries, str) else list(queries)
        check_search(texts, k, self.settings.search)
        if not texts:
            return []
        return self._searcher.search_embeddings(self.embed_queries(texts), k, rescore=rescore,
                                                filter=filter or "")

    def why_nothing_matched(self, filter: str) -> str | None:
        """Why ``filter`` may have matched no passage, when a sample of the collection shows a
        likely slip: a metadata key named like a passage field (``source`` is the passage's file;
        the record's own is ``metadata["source"]``), or a value of the other kind (``year >=
        "2020"`` where years are numbers). None otherwise. Reads ~1,000 rows' metadata: ask it
        after a filtered search came back empty."""
        return self._searcher.why_nothing_matched(filter)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query embeddings, float32 [n, dim]: a repeated query comes from the bounded cache
        (``search.query_cache_size``), emptied when the serving build changes."""
        return self.query_cache.embed(list(texts), self._searcher.snapshot.collection,
                                      self._searcher.embedder.encode_queries)

    def search_embeddings(self, embeddings: np.ndarray, k: int = 10, *, rescore: bool = True,
                          filter: str | None = None) -> list[list[Hit]]:
        """``search`` for embeddings made by this collection's model (``embed``), shape [n, dim]."""
        check_shape(len(embeddings), k, self.settings.search)
        vectors = np.asarray(embeddings, dtype=np.float32)
        dim = self._searcher.embedder.dim
        if vectors.ndim != 2 or vectors.shape[1] != dim:
            raise ValueError(f"embeddings have shape {vectors.shape}; this collection's model "
                             f"makes [n, {dim}]")
        return self._searcher.search_embeddings(vectors, k, rescore=rescore, filter=filter or "")

    @property
    def window(self) -> int:
        """Tokens the model reads of a text (its special tokens included); the rest is cut."""
        return self._searcher.embedder.artifact.max_seq_length

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text as the model counts them; above ``window``, only the start of
        the text is searched."""
        return self._searcher.embedder.token_counts(list(texts))

    def count(self) -> int:
        """Passages in the serving build."""
        return self._searcher.store.count(self._searcher.collection)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings of ``texts`` as queries (after the model's query prompt, if it
        has one) with the collection's model, float32 [n, dim]: what ``search_embeddings`` takes."""
        return self._searcher.embedder.encode_queries(list(texts))

    def info(self) -> CollectionInfo:
        """The serving build, its size, model, codec, index and bytes per vector, and the
        summary of the newest run."""
        from vecpress.tasks.report.summary import bytes_per_vector

        searcher = self._searcher
        snap = searcher.snapshot
        artifact = searcher.embedder.artifact
        index = searcher.store.index_info(snap.collection)
        kind = {"index_type": index.get("index_type", "?")}
        return CollectionInfo(
            name=self.name, build=snap.collection, milvus_uri=self.settings.milvus.uri,
            storage_root=self.settings.storage_root, rows=self.count(),
            model=artifact.name, model_variant=artifact.variant, embedding_dim=artifact.dim,
            codec=dict(snap.codec.report), index=index,
            bytes_per_vector=bytes_per_vector(artifact.dim, snap.codec.report, kind),
            last_run=_last_run(self.settings),
            typed_fields=searcher.store.typed_fields(snap.collection),
            similarity=snap.codec.similarity, footprint=self._measured(snap.collection))

    def _measured(self, build: str) -> dict[str, Any]:
        """The build's footprint, measured again when older than ``FOOTPRINT_TTL_S``: on an
        object store it lists every file of the collection."""
        from vecpress.tasks.search.footprint import measure_footprint

        at, measured_build, footprint = self._footprint
        if measured_build != build or time.monotonic() - at > FOOTPRINT_TTL_S:
            root = storage.CollectionPaths(self.settings.storage_root, self.settings.collection).root
            footprint = measure_footprint(root, self._searcher.store, build,
                                          self._searcher.rescore.directory).to_dict()
            self._footprint = (time.monotonic(), build, footprint)
        return footprint

    def close(self) -> None:
        """Release the model session and the Milvus connection (and a Milvus Lite file)."""
        try:
            self._searcher.store.close()
        finally:
            self._searcher.embedder.close()

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_collection(name: str | None = None, storage_root: str | None = None, *,
                    milvus_uri: str | None = None, settings: Settings | None = None) -> Collection:
    """Open collection ``name`` under ``storage_root`` for searching (defaults: those of
    ``settings``, else ``vecpress`` under ``./data``).

    The Milvus URI and model cache are the ones the collection was last ingested with, unless
    ``milvus_uri`` (or ``settings``) says otherwise. Raises ``LookupError`` when there is no such
    collection there, ``FileNotFoundError`` when its model is missing, and pymilvus errors when
    Milvus does not answer.
    """
    settings = settings or Settings()
    update: dict[str, Any] = {}
    if name is not None:
        update["collection"] = name
    if storage_root is not None:
        update["storage_root"] = str(storage_root)
    if milvus_uri is not None:
        update["milvus"] = settings.milvus.model_dump(exclude_unset=True) | {"uri": milvus_uri}
    if update:  # validated again; what was not set stays unset (taken from the collection)
        settings = Settings(**settings.model_dump(exclude_unset=True) | update)
    searcher = open_searcher(settings)
    return Collection(searcher, _with_milvus(settings, searcher))


def _with_milvus(settings: Settings, searcher: Searcher) -> Settings:
    """``settings`` naming the Milvus the searcher really opened (the collection's own)."""
    return settings.model_copy(update={"milvus": searcher.store.settings})


def ingest(sources: str | Sequence[str], settings: Settings | None = None, *,
           recreate: bool = False, full: bool = False, eval_queries: str | None = None
           ) -> IngestSummary:
    """Ingest files, folders, globs or fsspec URLs into ``settings.collection``; returns the run
    summary. The same flow as ``vecpress ingest``: it resumes what an interrupted run committed,
    and reports to ``PREFECT_API_URL`` if set, else to the local Prefect server (``vecpress
    server``) when it is up, else to a temporary Prefect API of its own.

    Raises ``ValueError`` for bad input or settings, ``OSError`` for a full or unwritable storage
    root, pymilvus errors when Milvus stays unreachable, ``PrefectServerError`` when the Prefect
    API does not answer.
    """
    from vecpress.flows.ingest import ingest_flow
    from vecpress.infra.local_prefect import prefect_api, without_flow_heartbeats
    from vecpress.infra.settings import LocalServerSettings

    _not_from_a_worker_importing_main("ingest")
    settings = settings or Settings()
    paths = [sources] if isinstance(sources, str) else list(sources)
    with prefect_api(LocalServerSettings(), settings.prefect_startup_s, start=False), \
            without_flow_heartbeats():
        return ingest_flow(sources=paths, settings=settings, eval_queries=eval_queries,
                           recreate=recreate, full=full)


def _not_from_a_worker_importing_main(call: str) -> None:
    """A local Dask cluster starts its workers with multiprocessing's spawn, which imports the
    caller's main script again in each worker. A script that calls ``vecpress.ingest`` at its top
    level (without the ``__main__`` guard) then ran the ingest again in every worker, each waiting
    for the collection lock that its parent holds while the parent waited for the workers: a
    hang with no output. In such a worker the call fails at once, saying why."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_globals.get("__name__") != "__mp_main__":
        frame = frame.f_back  # the spawned worker imports the script under this name
    if frame is None:
        return
    script = frame.f_globals.get("__file__") or "your script"
    raise RuntimeError(
        f"vecpress.{call}() was called while a worker process imported {script}: vecpress "
        "starts worker processes, and each imports the main script again; put the script's "
        "calls under `if __name__ == \"__main__\":` (Python's multiprocessing rule)")


def _last_run(settings: Settings) -> dict[str, Any] | None:
    """The summary of the newest run of the collection that wrote one (runs sort by start)."""
    runs = storage.join(storage.CollectionPaths(settings.storage_root, settings.collection).root,
                        "runs")
    for run in sorted(storage.listdir(runs), key=posixpath.basename, reverse=True):
        summary = storage.join(run, "summary.json")
        if storage.exists(summary):
            return storage.read_json(summary)
    return None
