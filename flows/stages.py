"""The ingest flow's Prefect tasks: one coarse task per stage, fanning shards out to Dask.

Prefect costs ~0.1–0.4 s per task, so a task is a stage, never a batch; the per-shard work runs on
the Dask cluster through a distributed Client and reports progress as shards finish. Each task
returns a small result record (``tasks/report/results.py``) that the flow adds to the run summary.
"""

from __future__ import annotations

import time

from distributed import Client
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from vecpress.flows.progress import gather
from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks import shard_jobs
from vecpress.tasks.codec.choose import DRIFT_SAMPLE, fit_new_codec, reuse_codec
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.incremental import ReuseIndex, split_shard
from vecpress.tasks.collection.loading import load_collection
from vecpress.tasks.collection.state import CollectionState
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import export_for_settings
from vecpress.tasks.inputs.records import SourceFile
from vecpress.tasks.inputs.sources import read_texts
from vecpress.tasks.report.results import (
    CheckResult,
    ChunkResult,
    CodecResult,
    EmbedResult,
    EncodeResult,
    LoadStageResult,
    ReuseResult,
)
from vecpress.tasks.search.evaluation import held_out_recall, own_text_hit_rate
from vecpress.tasks.search.searcher import RescoreStore, Searcher

EVAL_K = 10
SANITY_PROBES = 20  # passages searched by their own text after every load


@task(cache_policy=NONE)
def prepare_model(settings: Settings) -> ModelArtifact:
    return export_for_settings(settings.model, settings.model_cache_dir)


@task(cache_policy=NONE)
def chunk_stage(client: Client, files: list[SourceFile], settings: Settings, artifact: ModelArtifact,
                paths: CollectionPaths, run_id: str) -> ChunkResult:
    started = time.perf_counter()
    per = settings.inputs.files_per_shard
    groups = [files[i : i + per] for i in range(0, len(files), per)]
    prefixes = [storage.join(paths.run_dir(run_id), "passages", f"g{i:05d}")
                for i in range(len(groups))]
    futures = client.map(shard_jobs.chunk_files, groups, prefixes, inputs=settings.inputs,
                         chunking=settings.chunk, model_dir=artifact.model_dir,
                         rows_per_shard=settings.model.passages_per_shard, pure=False)
    chunked = gather(futures, "read + chunk")
    errors = [e for shard in chunked for e in shard.errors]
    for err in errors:
        get_run_logger().warning("input error: %s", err)
    return ChunkResult([url for c in chunked for url in c.urls], sum(c.documents for c in chunked),
                       sum(c.passages for c in chunked), errors, time.perf_counter() - started)


@task(cache_policy=NONE)
def reuse_stage(shard_urls: list[str], index: ReuseIndex) -> ReuseResult:
    """Passages whose text this collection already encoded skip embedding (content-hash cache)."""
    if not len(index):
        return ReuseResult(shard_urls, [], 0)
    splits = [split_shard(url, index, url.removesuffix(".parquet")) for url in shard_urls]
    return ReuseResult([s.to_embed for s in splits if s.to_embed],
                       [s.reused for s in splits if s.reused], sum(s.reused_rows for s in splits))


@task(cache_policy=NONE)
def embed_stage(client: Client, shard_urls: list[str], settings: Settings, artifact: ModelArtifact,
                threads: int, paths: CollectionPaths, run_id: str) -> EmbedResult:
    started = time.perf_counter()
    futures = client.map(shard_jobs.embed_shard, shard_urls,
                         [paths.part(run_id, "embeddings", i) for i in range(len(shard_urls))],
                         artifact=artifact, model=settings.model, threads=threads, pure=False)
    # Progress in passages (shards differ in size), as each shard's embeddings land.
    shards = gather(futures, "embed", weights=[storage.parquet_rows(u) for u in shard_urls],
                    unit="passages")
    return EmbedResult([s.url for s in shards], [s.rows for s in shards],
                       sum(s.rows for s in shards), sum(s.truncated for s in shards),
                       artifact.variant, time.perf_counter() - started)


@task(cache_policy=NONE)
def codec_stage(embedded: EmbedResult, settings: Settings, state: CollectionState | None,
                paths: CollectionPaths) -> CodecResult:
    """A first run fits the codec on a sample; later runs drift-check the collection's codec."""
    started = time.perf_counter()
    log = get_run_logger()
    if state is not None:
        codec = Codec.load(state.codec_dir)
        sample = shard_jobs.sample_embeddings(embedded.urls, embedded.rows, min(
            settings.codec.sample_size, DRIFT_SAMPLE), settings.codec.seed)
        report = reuse_codec(codec, sample, settings.codec)
        if report is not None and report.drifted:
            log.warning(report.message())
        return CodecResult(codec, False, time.perf_counter() - started)
    sample = shard_jobs.sample_embeddings(embedded.urls, embedded.rows, settings.codec.sample_size,
                                          settings.codec.seed)
    codec, lines = fit_new_codec(sample, settings.codec, settings.milvus)
    if lines:
        log.info("\n".join(lines))
    codec.save(paths.codec_dir(codec.codec_id))
    return CodecResult(codec, True, time.perf_counter() - started, lines)


@task(cache_policy=NONE)
def encode_stage(client: Client, embedded: EmbedResult, codec_dir: str, paths: CollectionPaths,
                 run_id: str) -> EncodeResult:
    started = time.perf_counter()
    out = [paths.part(run_id, "archive", i) for i in range(len(embedded.urls))]
    futures = client.map(shard_jobs.encode_shard, embedded.urls, out, codec_dir=codec_dir,
                         pure=False)
    gather(futures, "PCA + PQ encode")
    return EncodeResult(out, embedded.passages, time.perf_counter() - started)


@task(cache_policy=NONE)
def load_stage(settings: Settings, pairs: list[tuple[str, str]], codec: Codec, stale: list[int],
               passages: int) -> LoadStageResult:
    started = time.perf_counter()
    store = MilvusStore(settings.milvus)
    try:
        loaded = load_collection(store, settings.collection, codec, pairs, stale)
    finally:
        store.close()
    return LoadStageResult(loaded, passages, time.perf_counter() - started)


@task(cache_policy=NONE)
def check_stage(settings: Settings, state: CollectionState, artifact: ModelArtifact,
                codec: Codec, passages_url: str, embedding_urls: list[str],
                eval_queries: str | None) -> CheckResult:
    """Sanity search (own text in top 3) and, given held-out queries, recall@10 vs exact FP32."""
    started = time.perf_counter()
    store = MilvusStore(settings.milvus)
    # A handful of queries: no tokeniser processes to start for them.
    model = settings.model.model_copy(update={"tokenizer_processes": 0})
    try:
        searcher = Searcher(store, settings.collection, codec, OnnxEmbedder(artifact, model),
                            RescoreStore(state.archives), settings.milvus.rescore_factor)
        sanity = own_text_hit_rate(searcher, passages_url, SANITY_PROBES)
        recall = {} if not eval_queries or not embedding_urls else held_out_recall(
            searcher, read_texts(eval_queries, settings.inputs), embedding_urls, EVAL_K)
    finally:
        store.close()
    queries = int(recall.get("eval queries", 0)) + SANITY_PROBES
    return CheckResult(sanity, recall, queries, time.perf_counter() - started)
