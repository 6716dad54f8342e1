"""The ingest flow: read + chunk → embed → fit codec → encode → load into Milvus → index → check.

Orchestration only. Each Prefect task is one coarse stage (Prefect costs ~0.1–0.4 s per task); the
fine-grained work, one shard per Dask task, goes to the Dask cluster through a distributed Client.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from distributed import Client
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE

from vecpress.flows.progress import gather
from vecpress.infra import storage
from vecpress.infra.cluster import dask_client
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.state import CollectionState
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks import shard_jobs
from vecpress.tasks.autotune import autotune
from vecpress.tasks.codec import Codec, fit_codec
from vecpress.tasks.embedding import OnnxEmbedder
from vecpress.tasks.evaluation import held_out_recall, own_text_hit_rate
from vecpress.tasks.loading import load_shards
from vecpress.tasks.onnx_export import ModelArtifact, export_for_settings
from vecpress.tasks.records import SourceFile
from vecpress.tasks.report import IngestSummary, StageStat, bytes_per_vector
from vecpress.tasks.search import RescoreStore, Searcher
from vecpress.tasks.sources import discover, read_texts

EVAL_K = 10
SANITY_PROBES = 20  # passages searched by their own text after every load


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@task(cache_policy=NONE)
def prepare_model(settings: Settings) -> ModelArtifact:
    return export_for_settings(settings.model, settings.model_cache_dir)


@task(cache_policy=NONE)
def chunk_stage(client: Client, files: list[SourceFile], settings: Settings, artifact: ModelArtifact,
                paths: CollectionPaths, run_id: str) -> list[shard_jobs.ChunkShard]:
    per = settings.inputs.files_per_shard
    groups = [files[i : i + per] for i in range(0, len(files), per)]
    prefixes = [storage.join(paths.run_dir(run_id), "passages", f"g{i:05d}")
                for i in range(len(groups))]
    futures = client.map(shard_jobs.chunk_files, groups, prefixes, inputs=settings.inputs,
                         chunking=settings.chunk, model_dir=artifact.model_dir,
                         rows_per_shard=settings.model.passages_per_shard, pure=False)
    return gather(futures, "read + chunk")


@task(cache_policy=NONE)
def embed_stage(client: Client, shard_urls: list[str], settings: Settings, artifact: ModelArtifact,
                threads: int, paths: CollectionPaths, run_id: str) -> list[shard_jobs.EmbedShard]:
    futures = client.map(shard_jobs.embed_shard, shard_urls,
                         [paths.part(run_id, "embeddings", i) for i in range(len(shard_urls))],
                         artifact=artifact, threads=threads,
                         max_batch_tokens=settings.model.max_batch_tokens, pure=False)
    return gather(futures, "embed")


@task(cache_policy=NONE)
def codec_stage(embedded: list[shard_jobs.EmbedShard], settings: Settings,
                state: CollectionState | None, paths: CollectionPaths) -> Codec:
    if state is not None:
        return Codec.load(state.codec_dir)
    sample = shard_jobs.sample_embeddings(embedded, settings.codec.sample_size, settings.codec.seed)
    codec_settings, tuned = settings.codec, None
    if settings.codec.recall_target is not None:
        tuned = autotune(sample, settings.codec, settings.milvus)
        get_run_logger().info("\n".join(tuned.lines()))
        codec_settings = tuned.settings(settings.codec)
    codec = fit_codec(sample, codec_settings, autotune=tuned.to_dict() if tuned else None)
    codec.save(paths.codec_dir(codec.codec_id))
    return codec


@task(cache_policy=NONE)
def encode_stage(client: Client, embedded: list[shard_jobs.EmbedShard], codec_dir: str,
                 paths: CollectionPaths, run_id: str) -> list[str]:
    out = [paths.part(run_id, "archive", i) for i in range(len(embedded))]
    futures = client.map(shard_jobs.encode_shard, [e.url for e in embedded], out,
                         codec_dir=codec_dir, pure=False)
    gather(futures, "PCA + PQ encode")
    return out


@task(cache_policy=NONE)
def load_stage(settings: Settings, pairs: list[tuple[str, str]], codec: Codec) -> tuple[int, dict]:
    store = MilvusStore(settings.milvus)
    try:
        store.ensure_collection(settings.collection, codec.dim, codec.codec_id)
        written = load_shards(store, settings.collection, pairs, codec.codec_id)
        # A server loads only indexed collections, so index before counting.
        index = store.ensure_index(settings.collection, written, codec.report["pq_m"],
                                   codec.report["pq_nbits"])
        return store.count(settings.collection), index
    finally:
        store.close()


@task(cache_policy=NONE)
def check_stage(settings: Settings, state: CollectionState, artifact: ModelArtifact,
                codec: Codec, passages_url: str, embedding_urls: list[str],
                eval_queries: str | None) -> tuple[float, dict[str, float]]:
    """Sanity search (own text in top 3) and, given held-out queries, recall@10 vs exact FP32."""
    store = MilvusStore(settings.milvus)
    try:
        searcher = Searcher(store, settings.collection, codec,
                            OnnxEmbedder(artifact, max_batch_tokens=settings.model.max_batch_tokens),
                            RescoreStore(state.archives), settings.milvus.rescore_factor)
        sanity = own_text_hit_rate(searcher, passages_url, SANITY_PROBES)
        recall = {} if not eval_queries else held_out_recall(
            searcher, read_texts(eval_queries, settings.inputs), embedding_urls, EVAL_K)
        return sanity, recall
    finally:
        store.close()


@flow(name="vecpress-ingest", log_prints=True)
def ingest_flow(sources: list[str], settings: Settings, eval_queries: str | None = None,
                recreate: bool = False) -> dict:
    """Ingest ``sources`` into ``settings.collection`` and return the run summary."""
    log = get_run_logger()
    run_id = new_run_id()
    paths = CollectionPaths(settings.storage_root, settings.collection)
    summary = IngestSummary(run_id=run_id, collection=settings.collection,
                            milvus_uri=settings.milvus.uri)
    if recreate:
        _drop_collection(settings, paths)
    state = CollectionState.load(paths.state)

    started = time.perf_counter()
    files, errors = discover(sources, settings.inputs)
    artifact = prepare_model(settings)
    summary.files = len(files)
    summary.stages.append(StageStat("discover + model export", time.perf_counter() - started,
                                    len(files), "files"))
    if state is not None and state.model_artifact_dir != _artifact_dir(artifact):
        raise ValueError(f"collection '{settings.collection}' was built with another model or "
                         f"variant ({state.model_artifact_dir}); use --recreate or a new collection")

    with dask_client(settings.dask) as (client, cluster):
        summary.cluster = f"{cluster.kind}: {cluster.workers} worker(s) × " \
                          f"{cluster.threads_per_worker} thread(s)"
        log.info("run %s on %s", run_id, summary.cluster)
        t = time.perf_counter()
        chunked = chunk_stage(client, files, settings, artifact, paths, run_id)
        for shard in chunked:
            errors.extend(shard.errors)
        shards = [url for c in chunked for url in c.urls]
        summary.documents = sum(c.documents for c in chunked)
        summary.passages = sum(c.passages for c in chunked)
        summary.errors = [e.to_dict() for e in errors]
        summary.stages.append(StageStat("read + chunk", time.perf_counter() - t, summary.passages))
        for err in errors:
            log.warning("input error: %s", err)
        if errors:
            storage.write_json(storage.join(paths.run_dir(run_id), "errors.json"), summary.errors)
        if not shards:
            raise ValueError(f"no passages to ingest from {sources}: "
                             f"{len(errors)} input error(s), first: {errors[0] if errors else '-'}")

        t = time.perf_counter()
        embedded = embed_stage(client, shards, settings, artifact, cluster.threads_per_worker,
                               paths, run_id)
        summary.truncated = sum(e.truncated for e in embedded)
        summary.stages.append(StageStat("embed (ONNX " + artifact.variant + ")",
                                        time.perf_counter() - t, summary.passages))

        t = time.perf_counter()
        codec = codec_stage(embedded, settings, state, paths)
        summary.codec, summary.codec_reused = codec.report, state is not None
        summary.stages.append(StageStat("codec fit (PCA + PQ)" if state is None else "codec reuse",
                                        time.perf_counter() - t, codec.report["train_vectors"],
                                        "vectors"))
        t = time.perf_counter()
        archives = encode_stage(client, embedded, paths.codec_dir(codec.codec_id), paths, run_id)
        summary.stages.append(StageStat("PCA + PQ encode", time.perf_counter() - t,
                                        summary.passages))

    t = time.perf_counter()
    summary.rows_in_milvus, summary.index = load_stage(settings, list(zip(shards, archives,
                                                                          strict=True)), codec)
    summary.stages.append(StageStat("Milvus upsert + index", time.perf_counter() - t,
                                    summary.passages))
    state = state or CollectionState(collection=settings.collection,
                                     model_artifact_dir=_artifact_dir(artifact),
                                     model_variant=artifact.variant, codec_id=codec.codec_id,
                                     codec_dir=paths.codec_dir(codec.codec_id))
    state.archives.extend(archives)
    state.runs.append(run_id)
    state.save(paths.state)

    t = time.perf_counter()
    summary.sanity_self_top3, summary.recall = check_stage(
        settings, state, artifact, codec, shards[0], [e.url for e in embedded], eval_queries)
    summary.stages.append(StageStat("checks (search + recall)", time.perf_counter() - t,
                                    int(summary.recall.get("eval queries", 0)) + SANITY_PROBES,
                                    "queries"))
    summary.bytes_per_vector = bytes_per_vector(artifact.dim, codec.report, summary.index)
    storage.write_json(storage.join(paths.run_dir(run_id), "summary.json"), summary.to_dict())
    # Full FP32 embeddings are an intermediate (1.5 KB per vector); the archive is what stays.
    storage.remove(storage.join(paths.run_dir(run_id), "embeddings"))
    return summary.to_dict()


def _artifact_dir(artifact: ModelArtifact) -> str:
    return Path(artifact.onnx_path).parent.name


def _drop_collection(settings: Settings, paths: CollectionPaths) -> None:
    store = MilvusStore(settings.milvus)
    try:
        store.drop(settings.collection)
    finally:
        store.close()
    storage.remove(paths.root)
