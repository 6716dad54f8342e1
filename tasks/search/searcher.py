"""Search with rescoring: Milvus ANN over compressed vectors, then exact distances on a short list.

query → embed → PCA → Milvus ANN for k × r candidates (keys and distances only) → rescore with
the archived fp16 PCA vectors (memory-mapped from local disk, ``tasks.search.rescore_store``) →
top k → their texts and sources, in one Milvus query per batch. Scores estimate the model's own
similarity (``tasks.similarity``): for cosine, 1 − ‖q − x‖² / 2 in PCA space (the embeddings are
unit length, so this equals cosine up to the variance PCA dropped); for dot product, the inner
product; for Euclidean, −‖q − x‖.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vecpress.infra.bounds import MILVUS_TOPK
from vecpress.infra.milvus_fields import METADATA
from vecpress.infra.milvus_reads import OUTPUT_FIELDS, MilvusReads, milvus_errors
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.search import filter_hints, filters
from vecpress.tasks.search.filter_counts import FilterCounts
from vecpress.tasks.search.rescore_store import RescoreStore
from vecpress.tasks.similarity import distances, milvus_metric

log = logging.getLogger(__name__)
FOLLOW_S = 1.0  # how often a searcher looks for a newer catalog version

__all__ = ["Hit", "RescoreStore", "Searcher", "Snapshot"]  # opening one: tasks.search.opening


@dataclass(frozen=True)
class Hit:
    pk: int
    doc_id: str
    chunk: int
    text: str
    source: str
    score: float
    metadata: dict = field(default_factory=dict)  # the record's other fields ({} before kept)


@dataclass(frozen=True)
class Snapshot:
    """One consistent view of a collection: its physical Milvus collection, codec and rescoring
    vectors, all from the same catalog versions."""

    collection: str
    codec: Codec
    rescore: RescoreStore
    versions: tuple[int, ...] = ()
    nprobe: int = 64  # IVF lists probed, and candidates per result: the build's IndexPlan
    rescore_factor: int = 8


class Searcher:
    """Compressed ANN search plus rescoring over one collection.

    Given ``follow``, the searcher follows the collection: before a search it checks the catalog's
    versions (at most once a second) and moves to a new snapshot when an ingest or a rebuild
    committed one; each search uses one snapshot from start to end. Searches may run from many
    threads at once: the model session, codec and rescoring store are shared.
    """

    def __init__(self, store: MilvusReads, collection: str, codec: Codec,
                 embedder: OnnxEmbedder, rescore: RescoreStore, params: tuple[int, int],
                 follow: Callable[[tuple[int, ...]], Snapshot | None] | None = None,
                 versions: tuple[int, ...] = (), max_candidates: int = 65_536,
                 filter_exact_rows: int = 16_384,
                 max_filter_bytes: int = 4096, counts: FilterCounts | None = None,
                 post_filter_share: float = 0.1) -> None:
        """``params``: (nprobe, rescore factor), from ``index_plan.search_params``; the limits:
        ``search.max_candidates``, ``search.filter_exact_rows``, ``search.max_filter_bytes``;
        ``counts``: the large filters' counts (``search.filter_count_ttl_s``); filters keeping
        ``search.post_filter_share`` or more are applied after the ANN search."""
        self.store, self.embedder = store, embedder
        self.max_candidates, self.post_filter_share = max_candidates, post_filter_share
        self.filter_exact_rows, self.max_filter_bytes = filter_exact_rows, max_filter_bytes
        self._known_keys: dict[str, set[str]] = {}  # metadata keys seen to exist, per collection
        self.counts = counts if counts is not None else FilterCounts(0, 0)
        self.snapshot = Snapshot(collection, codec, rescore, versions, *params)
        self._follow = follow
        self._checked = time.monotonic()
        self._lock = threading.Lock()
        store.load(collection)

    @property
    def collection(self) -> str:
        return self.snapshot.collection

    @property
    def codec(self) -> Codec:
        return self.snapshot.codec

    @property
    def rescore(self) -> RescoreStore:
        return self.snapshot.rescore

    def _current(self, force: bool = False) -> Snapshot:
        """The snapshot to search; the catalog is looked at again at most once a second (by one
        thread; the others search the snapshot they find)."""
        if self._follow is None or not (force or time.monotonic() - self._checked >= FOLLOW_S):
            return self.snapshot
        with self._lock:
            if force or time.monotonic() - self._checked >= FOLLOW_S:
                self._checked = time.monotonic()
                try:
                    newer = self._follow(() if force else self.snapshot.versions)
                except FileNotFoundError as exc:  # the catalog moves on under it: look again
                    if force:
                        raise
                    log.info("kept serving %s; its successor could not be opened yet: %s",
                             self.snapshot.collection, exc)
                    newer = None
                if newer is not None:
                    if newer.collection != self.snapshot.collection:
                        self.store.load(newer.collection)
                    self.snapshot = newer
            return self.snapshot

    def search(self, texts: list[str], k: int, filter: str = "") -> list[list[Hit]]:
        return self.search_embeddings(self.embedder.encode_queries(texts), k, filter=filter)

    def search_embeddings(self, embeddings: np.ndarray, k: int, rescore: bool = True,
                          filter: str = "") -> list[list[Hit]]:
        """The ``k`` best hits per embedding: keys and distances from Milvus for k × r
        candidates, rescored from the archive, then the texts of the kept ones only. With a
        ``filter`` (``tasks.search.filters``), only passages that match it."""
        snap = self._current()
        try:
            return self._search(snap, embeddings, k, rescore, filter)
        except milvus_errors():
            if self._follow is None:
                raise
            # the build was switched and dropped meanwhile
            return self._search(self._current(force=True), embeddings, k, rescore, filter)

    def why_nothing_matched(self, filter: str) -> str | None:
        """Why ``filter`` may have matched no passage: a likely slip (``filter_hints``), or None,
        also when it cannot be told (Milvus not answering, any other failure, which is logged):
        a hint never fails the search it follows, from the CLI, Python or HTTP."""
        try:
            snap = self._current()
            wanted = self._translate(snap, filter)
            return None if wanted is None else filter_hints.why_nothing_matched(
                self.store, snap.collection, wanted)
        except milvus_errors():
            return None
        except Exception:
            log.warning("no filter hint for %r", filter, exc_info=True)
            return None

    def _translate(self, snap: Snapshot, filter: str) -> filters.Filter | None:
        return filters.translate(filter, self.store.has_field(snap.collection, METADATA),
                                 self.max_filter_bytes,
                                 frozenset(self.store.typed_fields(snap.collection)))

    def _search(self, snap: Snapshot, embeddings: np.ndarray, k: int, rescore: bool,
                filter: str = "") -> list[list[Hit]]:
        queries = snap.codec.project_queries(embeddings)
        offsets = snap.codec.query_offsets(embeddings)
        similarity = snap.codec.similarity
        wanted = self._translate(snap, filter)
        plan = None if wanted is None else filters.plan(
            self.store, snap.collection, wanted, snap.nprobe, self.filter_exact_rows,
            self._known_keys.setdefault(snap.collection, set()), self.counts)
        if plan is not None and plan.matches == 0:
            return [[] for _ in range(len(queries))]
        if plan is not None and plan.exact_pks is not None:
            have, vectors = snap.rescore.lookup(plan.exact_pks)
            if have.all():  # every match is scored: nothing an ANN probe could miss
                return self._hits(snap, [
                    filters.exact_rank(q, plan.exact_pks, vectors, k, similarity, offset)
                    for q, offset in zip(queries, offsets, strict=True)])
        nprobe = plan.nprobe if plan is not None else snap.nprobe
        expression = wanted.expression if wanted is not None else ""
        limit = min(k * snap.rescore_factor if rescore else k, MILVUS_TOPK, self.max_candidates)
        after = None if plan is None else filters.post_filter_limit(
            limit, plan.share, self.post_filter_share, min(MILVUS_TOPK, self.max_candidates))
        if after is not None:  # a broad filter: applied to an unfiltered search's candidates
            limit, nprobe, expression = after, snap.nprobe, ""
        # At most max_candidates (key, distance) pairs per Milvus call, each call's ranked to k
        # before the next: a large batch costs time, never memory beyond one call's answer.
        per_call = max(1, self.max_candidates // limit)
        ranked = []
        for start in range(0, len(queries), per_call):
            part = queries[start : start + per_call]
            found = self.store.search(snap.collection, snap.codec.for_milvus(part), limit,
                                      nprobe, expression, milvus_metric(similarity))
            if after is not None and wanted is not None:
                keep = self.store.matching(snap.collection,
                                           [pk for hits in found for pk, _ in hits],
                                           wanted.expression)
                found = [[h for h in hits if h[0] in keep] for hits in found]
            ranked += [self._rank(snap, q, hits, k, rescore, offset) for q, hits, offset
                       in zip(part, found, offsets[start : start + per_call], strict=True)]
        return self._hits(snap, ranked)

    def _hits(self, snap: Snapshot, ranked: list[list[tuple[int, float]]]) -> list[list[Hit]]:
        """The kept (pk, score) pairs with their rows' fields, fetched in one go."""
        metadata = self.store.has_field(snap.collection, METADATA)
        rows = self.store.rows(snap.collection, [pk for kept in ranked for pk, _ in kept],
                               [*OUTPUT_FIELDS, METADATA] if metadata else OUTPUT_FIELDS)
        # A row deleted between the two calls is left out rather than shown without its text.
        return [[Hit(pk=pk, doc_id=rows[pk]["doc_id"], chunk=int(rows[pk]["chunk"]),
                     text=rows[pk]["text"], source=rows[pk]["source"], score=score,
                     metadata=rows[pk].get(METADATA) or {})
                 for pk, score in kept if pk in rows] for kept in ranked]

    @staticmethod
    def _rank(snap: Snapshot, query: np.ndarray, hits: list[tuple[int, float]], k: int,
              rescore: bool, offset: float) -> list[tuple[int, float]]:
        """(pk, similarity estimate) of the best ``k`` candidates, best first."""
        if not hits:
            return []
        pks = np.array([pk for pk, _ in hits], dtype=np.int64)
        found_distances = np.array([d for _, d in hits], dtype=np.float32)
        if rescore:
            found, vectors = snap.rescore.lookup(pks)
            # candidates missing from the archive keep ANN distances
            found_distances[found] = distances(vectors, query, snap.codec.similarity)
        return filters.top_k(pks, found_distances, k, snap.codec.similarity, offset)
