"""The ingest flow's Prefect tasks: one coarse task per stage, fanning shards out to Dask.

Prefect costs ~0.1–0.4 s per task, so a task is a stage, never a batch; the per-shard work runs on
the Dask cluster through a distributed Client and reports progress as shards finish.
"""

from __future__ import annotations

from distributed import Client
from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from vecpress.flows.progress import gather
from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.state import CollectionState
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks import shard_jobs
from vecpress.tasks.autotune import autotune
from vecpress.tasks.codec import Codec, fit_codec
from vecpress.tasks.codec_drift import DriftReport, drift_check
from vecpress.tasks.embedding import OnnxEmbedder
from vecpress.tasks.evaluation import held_out_recall, own_text_hit_rate
from vecpress.tasks.incremental import ReuseIndex, ShardSplit, split_shard
from vecpress.tasks.loading import load_shards
from vecpress.tasks.onnx_export import ModelArtifact, export_for_settings
from vecpress.tasks.records import SourceFile
from vecpress.tasks.search import RescoreStore, Searcher
from vecpress.tasks.sources import read_texts

EVAL_K = 10
SANITY_PROBES = 20  # passages searched by their own text after every load
REPORT_TARGET = 0.95  # reference line of the recall-vs-bytes curve when no target is set
DRIFT_SAMPLE = 5000  # new vectors compared with the codec's training error


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
def reuse_stage(shard_urls: list[str], index: ReuseIndex) -> list[ShardSplit]:
    """Passages whose text this collection already encoded skip embedding (content-hash cache)."""
    if not len(index):
        return [ShardSplit(url, None) for url in shard_urls]
    return [split_shard(url, index, url.removesuffix(".parquet")) for url in shard_urls]


@task(cache_policy=NONE)
def embed_stage(client: Client, shard_urls: list[str], settings: Settings, artifact: ModelArtifact,
                threads: int, paths: CollectionPaths, run_id: str) -> list[shard_jobs.EmbedShard]:
    futures = client.map(shard_jobs.embed_shard, shard_urls,
                         [paths.part(run_id, "embeddings", i) for i in range(len(shard_urls))],
                         artifact=artifact, threads=threads,
                         max_batch_tokens=settings.model.max_batch_tokens,
                         min_batch_tokens=settings.model.min_batch_tokens,
                         arena_max_mb=settings.model.arena_max_mb,
                         tokenizer_processes=settings.model.tokenizer_processes,
                         sessions=settings.model.sessions, pure=False)
    # Progress in passages (shards differ in size), as each shard's embeddings land.
    return gather(futures, "embed", weights=[storage.parquet_rows(u) for u in shard_urls],
                  unit="passages")


@task(cache_policy=NONE)
def codec_stage(embedded: list[shard_jobs.EmbedShard], settings: Settings,
                state: CollectionState | None, paths: CollectionPaths) -> Codec:
    if state is not None:
        return _reuse_codec(embedded, settings, state)
    sample = shard_jobs.sample_embeddings(embedded, settings.codec.sample_size, settings.codec.seed)
    codec_settings, tuned = settings.codec, None
    if settings.codec.recall_target is not None:
        tuned = autotune(sample, settings.codec, settings.milvus)
        codec_settings = tuned.settings(settings.codec)
    elif len(sample) >= 4 * settings.codec.autotune_queries:
        # No target: still measure the recall-vs-bytes curve around the configured codec for the
        # run report, without changing the choice.
        c = settings.codec
        around = c.model_copy(update={"autotune_pca_dims": [c.pca_dim], "autotune_pq_m": sorted(
            {m for m in (c.pq_m // 4, c.pq_m // 2, c.pq_m) if m >= 1 and c.pca_dim % m == 0})})
        tuned = autotune(sample, around, settings.milvus, target=REPORT_TARGET)
        tuned.chosen = next((r for r in tuned.rows if r.pq_m == c.pq_m), tuned.chosen)
    table = None
    if tuned is not None:
        get_run_logger().info("\n".join(tuned.lines()))
        table = tuned.to_dict() | {"applied": settings.codec.recall_target is not None}
    codec = fit_codec(sample, codec_settings, autotune=table)
    codec.save(paths.codec_dir(codec.codec_id))
    return codec


class CodecDriftError(RuntimeError):
    """New data no longer fits the collection's codec and ``codec.drift_action`` is retrain."""

    def __init__(self, report: DriftReport) -> None:
        super().__init__(report.message())
        self.report = report


def _reuse_codec(embedded: list[shard_jobs.EmbedShard], settings: Settings,
                 state: CollectionState) -> Codec:
    """The collection's codec, after a drift check on a sample of this run's new vectors."""
    codec = Codec.load(state.codec_dir)
    if "reconstruction_relative_error" not in codec.report:
        return codec  # trained before drift checks existed: nothing to compare with
    sample = shard_jobs.sample_embeddings(embedded, min(settings.codec.sample_size, DRIFT_SAMPLE),
                                          settings.codec.seed)
    report = drift_check(codec, sample, settings.codec)
    codec.report = codec.report | {"drift": report.to_dict()}
    if report.drifted:
        get_run_logger().warning(report.message())
    if report.retrain:
        raise CodecDriftError(report)
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
def load_stage(settings: Settings, pairs: list[tuple[str, str]], codec: Codec,
               stale: list[int]) -> tuple[int, int, dict]:
    """Delete stale rows first (a new file may reuse a deleted file's keys), then upsert + index."""
    store = MilvusStore(settings.milvus)
    try:
        store.ensure_collection(settings.collection, codec.dim, codec.codec_id)
        deleted = store.delete(settings.collection, stale)
        written = load_shards(store, settings.collection, pairs, codec.codec_id)
        # A server loads only indexed collections, so index before counting.
        index = store.ensure_index(settings.collection, max(written, 1), codec.report["pq_m"],
                                   codec.report["pq_nbits"], codec.nlist)
        return store.count(settings.collection), deleted, index
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
        recall = {} if not eval_queries or not embedding_urls else held_out_recall(
            searcher, read_texts(eval_queries, settings.inputs), embedding_urls, EVAL_K)
        return sanity, recall
    finally:
        store.close()
