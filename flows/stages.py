"""The ingest flow's Prefect tasks: model export, the streaming run, index, checks, cleanup.

Prefect costs ~0.1–0.4 s per task, so a task is a stage, never a shard: the per-shard work streams
over the Dask cluster inside ``stream_stage`` (``tasks/ingest/engine.py``), which commits each
shard to the catalog as it lands. Each task returns a small result record for the run summary.
"""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from vecpress.flows.progress import HEADLINE, StreamProgress
from vecpress.infra import storage
from vecpress.infra.cluster import dask_client
from vecpress.infra.index_plan import IndexPlan, search_params
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.builds import live_shards
from vecpress.tasks.collection.catalog import Build, Catalog
from vecpress.tasks.collection.gc import GcResult, collect_garbage
from vecpress.tasks.collection.loading import LoadResult, index_collection
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.export import export_for_settings
from vecpress.tasks.embed.per_process import query_embedder
from vecpress.tasks.embed.published import publish
from vecpress.tasks.ingest.engine import StreamEngine
from vecpress.tasks.ingest.results import StreamJob, StreamResult
from vecpress.tasks.inputs.sources import sample_texts
from vecpress.tasks.report.results import CheckResult
from vecpress.tasks.search.evaluation import held_out_recall, own_text_hit_rate
from vecpress.tasks.search.footprint import Footprint, measure_collection
from vecpress.tasks.search.opening import rescore_directory
from vecpress.tasks.search.rescore_store import RescoreStore
from vecpress.tasks.search.searcher import Searcher

EVAL_K = 10
SANITY_PROBES = 20  # passages searched by their own text after every load


@task(cache_policy=NONE)
def prepare_model(settings: Settings, sources: list[str]) -> ModelArtifact:
    """The model's artifact; a first export also checks its fidelity on the sources' text. On an
    object-store root it is also published there, for workers that share no disk with this one."""
    artifact = export_for_settings(settings.model, settings.model_cache_dir,
                                   lambda: sample_texts(sources, settings.inputs))
    if storage.is_remote(settings.storage_root):
        artifact = publish(artifact, settings.storage_root)
    return artifact


@task(cache_policy=NONE)
def stream_stage(settings: Settings, job: StreamJob, artifact: ModelArtifact,
                 run_id: str) -> tuple[StreamResult, str]:
    """Chunk → embed → encode → load every shard of ``job`` on the Dask cluster, streaming."""
    log = get_run_logger()
    catalog = Catalog(CollectionPaths(settings.storage_root, settings.collection).root)
    with dask_client(settings.dask, settings.storage_root, settings.storage_options,
                     job.input_bytes) as (client, cluster), \
            StreamProgress("ingest") as progress:
        where = f"{cluster.kind}: {cluster.workers} worker(s) × {cluster.threads_per_worker} " \
                "thread(s)"
        dashboard = f" (dashboard {cluster.dashboard})" if cluster.dashboard else ""
        log.info("run %s on %s%s: %d shard group(s) to read", run_id, where, dashboard,
                 len(job.groups), extra=HEADLINE)
        engine = StreamEngine(client, settings, catalog, artifact, cluster.threads_per_worker,
                              run_id, progress.update)
        try:
            result = engine.run(job)
        finally:
            engine.close()
    for line in result.codec_lines:
        log.info(line, extra=HEADLINE)
    for note in result.notes:
        log.warning(note)
    return result, where


@task(cache_policy=NONE)
def index_stage(settings: Settings, build: Build, codec: Codec) -> tuple[LoadResult, float]:
    """Index for the rows the build holds now (rebuilt when it outgrew its index), load, count;
    the seconds."""
    started = time.perf_counter()
    store = MilvusStore(settings.milvus)
    try:
        store.ensure_collection(build.build, codec.milvus_dim, codec.codec_id)
        plan, index, rows = index_collection(store, build.build, codec,
                                             IndexPlan.from_json(build.index))
        return LoadResult(0, 0, rows, index, plan), time.perf_counter() - started
    finally:
        store.close()


@task(cache_policy=NONE)
def check_stage(settings: Settings, build: Build, artifact: ModelArtifact, codec: Codec,
                passages_url: str, embedding_urls: list[str], eval_queries: list[str] | None
                ) -> CheckResult:
    """Sanity search (own text in top 3) and, given held-out queries (their texts, read by
    ``tasks.inputs.eval_queries`` when the run started), recall@10 vs exact FP32."""
    started = time.perf_counter()
    paths = CollectionPaths(settings.storage_root, settings.collection)
    archives = [a for _, a, _ in live_shards(Catalog(paths.root), build.build)]
    store = MilvusStore(settings.milvus)
    try:
        searcher = Searcher(store, build.build, codec, query_embedder(artifact, settings.model),
                            RescoreStore(archives, rescore_directory(paths, build.build)),
                            search_params(settings.milvus, IndexPlan.from_json(build.index)))
        sanity = own_text_hit_rate(searcher, passages_url, SANITY_PROBES)
        recall = {} if not eval_queries or not embedding_urls else held_out_recall(
            searcher, eval_queries, embedding_urls, EVAL_K)
    finally:
        store.close()
    queries = int(recall.get("eval queries", 0)) + SANITY_PROBES
    return CheckResult(sanity, recall, queries, time.perf_counter() - started)


@task(cache_policy=NONE)
def gc_stage(settings: Settings, build: str | None) -> tuple[GcResult, Footprint | None]:
    """Garbage collection, then what ``build`` costs, measured: what is kept (one store). No
    ``build``: nothing measured (a run that changed nothing; on Milvus Lite, measuring would
    read every row of the collection)."""
    paths = CollectionPaths(settings.storage_root, settings.collection)
    store = MilvusStore(settings.milvus)
    try:
        collected = collect_garbage(paths, Catalog(paths.root), store, settings.gc_grace_s)
        return collected, None if build is None else measure_collection(settings, store, build)
    finally:
        store.close()
