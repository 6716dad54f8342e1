"""The ingest flow, incremental by default.

discover → compare with the manifest (new / changed / unchanged / deleted files) → read + chunk the
new and changed files → reuse archived vectors of unchanged passage text → embed the rest → fit the
codec (first run) or reuse it → encode → delete stale rows, upsert, index → check → manifest.

Orchestration only: the stages live in flows/stages.py, their logic in tasks/.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from vecpress.flows import stages
from vecpress.flows.artifacts import publish_summary
from vecpress.infra import storage
from vecpress.infra.cluster import dask_client
from vecpress.infra.locks import collection_lock
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.choose import CodecDriftError
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.incremental import (
    OldPassages,
    ReuseIndex,
    merge_pks,
    pks_by_source,
    read_old_passages,
    stale_pks,
)
from vecpress.tasks.collection.manifest import ChangePlan, Manifest, plan_changes
from vecpress.tasks.collection.state import CollectionState, drop_collection, new_run_id
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.inputs.sources import discover
from vecpress.tasks.report.summary import IngestSummary, StageStat, bytes_per_vector


@flow(name="vecpress-ingest", log_prints=True)
def ingest_flow(sources: list[str], settings: Settings, eval_queries: str | None = None,
                recreate: bool = False, full: bool = False) -> IngestSummary:
    """Bring ``settings.collection`` up to date with ``sources``; return the run summary.

    Only new and changed files are read; rows of deleted files are removed. One run per collection
    at a time: a run that finds the collection busy waits for its turn.

    Args:
        sources: Files, folders, globs or fsspec URLs; a known file that is gone is deleted.
        settings: Collection, model, codec, Milvus and Dask settings of the run.
        eval_queries: JSONL of held-out {id, text} queries: report recall@10 vs exact FP32.
        recreate: Drop the collection, its codec and archive first.
        full: Read every file again (unchanged passage text still reuses its vectors).
    """
    log = get_run_logger()
    with collection_lock(settings.storage_root, settings.collection, logger=log):
        summary = _ingest(sources, settings, eval_queries, recreate, full)
    publish_summary(summary, CollectionPaths(settings.storage_root, settings.collection)
                    .run_dir(summary.run_id))
    return summary


def _ingest(sources: list[str], settings: Settings, eval_queries: str | None,
            recreate: bool, full: bool) -> IngestSummary:
    log = get_run_logger()
    paths = CollectionPaths(settings.storage_root, settings.collection)
    summary = IngestSummary(run_id=new_run_id(), collection=settings.collection,
                            milvus_uri=settings.milvus.uri)
    if recreate:
        drop_collection(settings)
    state = CollectionState.load(paths.state)
    manifest = Manifest.load(paths.manifest)

    started = time.perf_counter()
    files, errors = discover(sources, settings.inputs)
    chunking = settings.chunk.model_dump(mode="json")
    if state is not None and state.chunking and state.chunking != chunking and not full:
        log.warning("chunk settings changed since the last run (%s → %s): reading every file again",
                    state.chunking, chunking)
        full = True
    plan, errors = plan_changes(sources, files, errors, manifest, reread_all=full)
    summary.files, summary.changes = len(files), plan.counts()
    summary.add_errors(errors)
    for err in errors:
        log.warning("input error: %s", err)
    log.info("files: %s", plan.counts())
    summary.stages.append(StageStat("discover + compare with manifest",
                                    time.perf_counter() - started, len(files), "files"))
    if plan.is_empty and (manifest or not errors):
        log.info("collection '%s' is up to date with %s", settings.collection, sources)
        manifest.save(paths.manifest)  # refreshed stamps of touched-but-identical files
        _finish(summary, paths)
        return summary

    old = read_old_passages([manifest.entries[f.url] for f in plan.changed] +
                            [manifest.entries[p] for p in plan.deleted])
    started = time.perf_counter()
    artifact = stages.prepare_model(settings)
    summary.stages.append(StageStat("model export (cached)", time.perf_counter() - started, 1,
                                    "models"))
    if state is not None and state.model_artifact_dir != artifact.name:
        raise ValueError(f"collection '{settings.collection}' was built with another model or "
                         f"variant ({state.model_artifact_dir}); use --recreate or a new collection")

    pairs: list[tuple[str, str]] = []
    embedded_urls: list[str] = []
    codec = None
    if plan.to_read:
        try:
            pairs, embedded_urls, codec = _chunk_embed_encode(plan, old, settings, artifact, state,
                                                              paths, summary)
        except CodecDriftError as drift:
            # Retrain = rebuild: every vector must come from the one new codec.
            everything = sorted(set(manifest.entries) | set(sources))
            log.warning("%s: retraining the codec and rebuilding '%s' from %d source(s)", drift,
                        settings.collection, len(everything))
            return _ingest(everything, settings, eval_queries, recreate=True, full=True)
    written = {pair: pks_by_source([pair[0]]) for pair in pairs}  # source → pks, per shard pair
    stale = stale_pks(old.pks_by_source, merge_pks(written.values()))
    if (plan.to_read and not pairs and not stale and not plan.unchanged) or \
            (codec is None and state is None):
        # The sources hold nothing readable and nothing to delete: fail clearly, change nothing.
        _finish(summary, paths, write_summary=False)
        first = summary.errors[0] if summary.errors else None
        raise ValueError(f"no passages to ingest from {sources}: {len(summary.errors)} input "
                         f"error(s), first: {_error_line(first)}")
    if codec is None:
        codec = Codec.load(state.codec_dir)  # deletions or reuse only: the codec exists

    summary.add_load(stages.load_stage(settings, pairs, codec, stale, summary.passages))
    state = state or CollectionState(collection=settings.collection,
                                     model_artifact_dir=artifact.name,
                                     model_variant=artifact.variant, codec_id=codec.codec_id,
                                     codec_dir=paths.codec_dir(codec.codec_id))
    # Which passages shard goes with which archive shard: reindex reads it (names do not say).
    storage.write_json(storage.join(paths.run_dir(summary.run_id), "pairs.json"), pairs)
    state.chunking = chunking
    state.archives.extend(a for _, a in pairs)
    state.runs.append(summary.run_id)
    state.save(paths.state)
    manifest.record_run(plan, written, codec.codec_id, summary.run_id)
    manifest.save(paths.manifest)

    if pairs:
        summary.add_check(stages.check_stage(settings, state, artifact, codec, pairs[0][0],
                                             embedded_urls, eval_queries))
    summary.bytes_per_vector = bytes_per_vector(artifact.dim, codec.report, summary.index)
    _finish(summary, paths)
    return summary


def _chunk_embed_encode(plan: ChangePlan, old: OldPassages, settings: Settings,
                        artifact: ModelArtifact, state: CollectionState | None,
                        paths: CollectionPaths, summary: IngestSummary
                        ) -> tuple[list[tuple[str, str]], list[str], Codec | None]:
    """The Dask part of a run: (passages, archive) pairs to load, the embedding shards, the codec."""
    log = get_run_logger()
    with dask_client(settings.dask) as (client, cluster):
        summary.cluster = f"{cluster.kind}: {cluster.workers} worker(s) × " \
                          f"{cluster.threads_per_worker} thread(s)"
        log.info("run %s on %s", summary.run_id, summary.cluster)
        chunked = stages.chunk_stage(client, plan.to_read, settings, artifact, paths,
                                     summary.run_id)
        summary.add_chunking(chunked)
        split = stages.reuse_stage(chunked.shards,
                                   old.reuse if state is not None else ReuseIndex.empty())
        summary.add_reuse(split)
        if not split.to_embed:
            return split.reused, [], None
        embedded = stages.embed_stage(client, split.to_embed, settings, artifact,
                                      cluster.threads_per_worker, paths, summary.run_id)
        summary.add_embedding(embedded)
        fitted = stages.codec_stage(embedded, settings, state, paths)
        summary.add_codec(fitted)
        encoded = stages.encode_stage(client, embedded, paths.codec_dir(fitted.codec.codec_id),
                                      paths, summary.run_id)
        summary.add_encoding(encoded)
    pairs = list(zip(split.to_embed, encoded.archives, strict=True)) + split.reused
    return pairs, embedded.urls, fitted.codec


def _error_line(error: dict | None) -> str:
    if error is None:
        return "-"
    where = f"{error['source']}:{error['location']}" if error["location"] else error["source"]
    return f"{where}: {error['message']}" + (f" ({error['hint']})" if error["hint"] else "")


def _finish(summary: IngestSummary, paths: CollectionPaths, write_summary: bool = True) -> None:
    run_dir = paths.run_dir(summary.run_id)
    if write_summary:
        summary.save(run_dir)
    elif summary.errors:
        storage.write_json(storage.join(run_dir, "errors.json"), summary.errors)
    # Full FP32 embeddings are an intermediate (1.5 KB per vector); the archive is what stays.
    storage.remove(storage.join(run_dir, "embeddings"))
