"""The embedders a process keeps: one per Dask worker for its shards, and the one an ingest's
sanity check borrows. Kept apart from ``embedder`` (the session and its batching)."""

from __future__ import annotations

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.worker_cache import cached, per_worker


def query_embedder(artifact: ModelArtifact, model: ModelSettings) -> OnnxEmbedder:
    """An embedder for a handful of queries (an ingest's sanity check): the one this process's
    embed stage built for ``artifact``, when a small run's stages ran here
    (``dask.in_process_bytes``), else a new one without tokeniser processes. Its vectors depend
    on the artifact alone; a second session cost ~0.3 s of a one-file ingest."""
    for embedder in reversed(cached("embedder")):
        if embedder.artifact == artifact:
            return embedder
    return OnnxEmbedder(artifact, model.model_copy(update={"tokenizer_processes": 0}))


def worker_embedder(artifact: ModelArtifact, model: ModelSettings, threads: int) -> OnnxEmbedder:
    """The process-wide embedder: each Dask worker process builds its session once, lazily.

    Its token budget (halved after out-of-memory errors) therefore persists across shards.
    """
    return per_worker("embedder", lambda: OnnxEmbedder(artifact, model, threads), artifact,
                      model, threads)
