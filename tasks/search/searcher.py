"""Search with rescoring: Milvus ANN over compressed vectors, then exact distances on a short list.

query → embed → PCA → Milvus ANN for k × r candidates → rescore with the archived fp16 PCA
vectors (memory-mapped from local disk, ``tasks.search.rescore_store``) → top k. Scores are cosine
estimates, 1 − ‖q − x‖² / 2 in PCA space (the embeddings are unit length, so this equals cosine up
to the variance PCA dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vecpress.infra import storage
from vecpress.infra.milvus import OUTPUT_FIELDS, MilvusStore
from vecpress.infra.settings import Settings
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.state import CollectionState
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.search.rescore_store import RescoreStore

__all__ = ["CollectionNotFoundError", "Hit", "RescoreStore", "Searcher", "open_searcher"]


@dataclass(frozen=True)
class Hit:
    pk: int
    doc_id: str
    chunk: int
    text: str
    source: str
    score: float


class Searcher:
    """Compressed ANN search plus rescoring over one collection."""

    def __init__(self, store: MilvusStore, collection: str, codec: Codec,
                 embedder: OnnxEmbedder, rescore: RescoreStore, rescore_factor: int) -> None:
        self.store, self.collection, self.codec = store, collection, codec
        self.embedder, self.rescore, self.rescore_factor = embedder, rescore, rescore_factor
        store.load(collection)

    def search(self, texts: list[str], k: int) -> list[list[Hit]]:
        return self.search_embeddings(self.embedder.encode(texts), k)

    def search_embeddings(self, embeddings: np.ndarray, k: int, rescore: bool = True
                          ) -> list[list[Hit]]:
        queries = self.codec.project(embeddings)
        limit = min(k * self.rescore_factor, 16_384) if rescore else k
        results = self.store.search(self.collection, queries, limit, OUTPUT_FIELDS)
        return [self._rank(q, hits, k, rescore) for q, hits in zip(queries, results, strict=True)]

    def _rank(self, query: np.ndarray, hits: list[dict], k: int, rescore: bool) -> list[Hit]:
        if not hits:
            return []
        pks = np.array([h["id"] if "id" in h else h["pk"] for h in hits], dtype=np.int64)
        distances = np.array([h["distance"] for h in hits], dtype=np.float32)
        if rescore:
            found, vectors = self.rescore.lookup(pks)
            exact = np.sum((vectors - query) ** 2, axis=1)
            distances[found] = exact  # candidates missing from the archive keep ANN distances
        order = np.argsort(distances, kind="stable")[:k]
        out = []
        for i in order:
            entity = hits[i]["entity"]
            out.append(Hit(pk=int(pks[i]), doc_id=entity["doc_id"], chunk=int(entity["chunk"]),
                           text=entity["text"], source=entity["source"],
                           score=float(1.0 - distances[i] / 2.0)))
        return out


class CollectionNotFoundError(LookupError):
    """Search was asked for a collection this storage root has no record of."""


def open_searcher(settings: Settings) -> Searcher:
    """A searcher for ``settings.collection`` using the model and codec it was built with."""
    paths = storage.CollectionPaths(settings.storage_root, settings.collection)
    state = CollectionState.load(paths.state)
    if state is None:
        raise CollectionNotFoundError(
            f"no collection '{settings.collection}' under {settings.storage_root}; ingest first "
            "(vecpress ingest PATH --collection NAME) or pass the right --storage-root")
    artifact = ModelArtifact.load(settings.model_cache_dir / state.model_artifact_dir)
    embedder = OnnxEmbedder(artifact, settings.model)
    store = MilvusStore(settings.milvus)
    return Searcher(store, settings.collection, Codec.load(state.codec_dir), embedder,
                    RescoreStore(state.archives), settings.milvus.rescore_factor)
