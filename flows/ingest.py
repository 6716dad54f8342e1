"""The ingest flow, incremental by default.

discover → compare with the manifest (new / changed / unchanged / deleted files) → read + chunk the
new and changed files → reuse archived vectors of unchanged passage text → embed the rest → fit the
codec (first run) or reuse it → encode → delete stale rows, upsert, index → check → manifest.

Orchestration only: the stages live in flows/stages.py, their logic in tasks/.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger

from vecpress.flows import stages
from vecpress.flows.artifacts import publish_summary
from vecpress.infra import storage
from vecpress.infra.cluster import dask_client
from vecpress.infra.locks import collection_lock
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.state import CollectionState
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec import Codec
from vecpress.tasks.incremental import (
    OldPassages,
    ReuseIndex,
    pks_by_source,
    read_old_passages,
    stale_pks,
)
from vecpress.tasks.manifest import ChangePlan, FileEntry, Manifest, plan_changes
from vecpress.tasks.onnx_export import ModelArtifact
from vecpress.tasks.report import IngestSummary, StageStat, bytes_per_vector
from vecpress.tasks.sources import discover


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"


@flow(name="vecpress-ingest", log_prints=True)
def ingest_flow(sources: list[str], settings: Settings, eval_queries: str | None = None,
                recreate: bool = False, full: bool = False) -> dict:
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
    return summary.to_dict()


def _ingest(sources: list[str], settings: Settings, eval_queries: str | None,
            recreate: bool, full: bool) -> IngestSummary:
    log = get_run_logger()
    run_id = new_run_id()
    paths = CollectionPaths(settings.storage_root, settings.collection)
    summary = IngestSummary(run_id=run_id, collection=settings.collection,
                            milvus_uri=settings.milvus.uri)
    if recreate:
        _drop_collection(settings, paths)
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
    summary.errors = [e.to_dict() for e in errors]
    for err in errors:
        log.warning("input error: %s", err)
    log.info("files: %s", plan.counts())
    summary.stages.append(StageStat("discover + compare with manifest",
                                    time.perf_counter() - started, len(files), "files"))
    if plan.is_empty and (manifest or not errors):
        log.info("collection '%s' is up to date with %s", settings.collection, sources)
        manifest.save(paths.manifest)  # refreshed stamps of touched-but-identical files
        _finish(summary, paths, errors)
        return summary

    old = read_old_passages([manifest.entries[f.url] for f in plan.changed] +
                            [manifest.entries[p] for p in plan.deleted])
    t = time.perf_counter()
    artifact = stages.prepare_model(settings)
    summary.stages.append(StageStat("model export (cached)", time.perf_counter() - t, 1, "models"))
    if state is not None and state.model_artifact_dir != _artifact_dir(artifact):
        raise ValueError(f"collection '{settings.collection}' was built with another model or "
                         f"variant ({state.model_artifact_dir}); use --recreate or a new collection")

    pairs, embedded_urls = [], []
    codec = None
    if plan.to_read:
        try:
            pairs, embedded_urls, codec, errors = _chunk_embed_encode(
                plan, old, settings, artifact, state, paths, run_id, summary, errors)
        except stages.CodecDriftError as drift:
            # Retrain = rebuild: every vector must come from the one new codec.
            everything = sorted(set(manifest.entries) | set(sources))
            log.warning("%s: retraining the codec and rebuilding '%s' from %d source(s)", drift,
                        settings.collection, len(everything))
            return _ingest(everything, settings, eval_queries, recreate=True, full=True)
    written = {pair: pks_by_source([pair[0]]) for pair in pairs}  # source → pks, per shard pair
    stale = stale_pks(old.pks_by_source, _merge(written.values()))
    if (plan.to_read and not pairs and not stale and not plan.unchanged) or \
            (codec is None and state is None):
        # The sources hold nothing readable and nothing to delete: fail clearly, change nothing.
        _finish(summary, paths, errors, write_summary=False)
        raise ValueError(f"no passages to ingest from {sources}: {len(errors)} input error(s), "
                         f"first: {errors[0] if errors else '-'}")
    if codec is None:
        codec = Codec.load(state.codec_dir)  # deletions or reuse only: the codec exists

    t = time.perf_counter()
    summary.rows_in_milvus, summary.rows_deleted, summary.index = stages.load_stage(
        settings, pairs, codec, stale)
    summary.stages.append(StageStat("Milvus delete + upsert + index", time.perf_counter() - t,
                                    summary.passages))
    state = state or CollectionState(collection=settings.collection,
                                     model_artifact_dir=_artifact_dir(artifact),
                                     model_variant=artifact.variant, codec_id=codec.codec_id,
                                     codec_dir=paths.codec_dir(codec.codec_id))
    # Which passages shard goes with which archive shard: reindex reads it (names do not say).
    storage.write_json(storage.join(paths.run_dir(run_id), "pairs.json"), pairs)
    state.chunking = chunking
    state.archives.extend(a for _, a in pairs)
    state.runs.append(run_id)
    state.save(paths.state)
    _update_manifest(manifest, plan, written, codec.codec_id, run_id)
    manifest.save(paths.manifest)

    if pairs:
        t = time.perf_counter()
        summary.sanity_self_top3, summary.recall = stages.check_stage(
            settings, state, artifact, codec, pairs[0][0], embedded_urls, eval_queries)
        summary.stages.append(StageStat("checks (search + recall)", time.perf_counter() - t,
                                        int(summary.recall.get("eval queries", 0))
                                        + stages.SANITY_PROBES, "queries"))
    summary.bytes_per_vector = bytes_per_vector(artifact.dim, codec.report, summary.index)
    _finish(summary, paths, errors)
    return summary


def _chunk_embed_encode(plan: ChangePlan, old: OldPassages, settings: Settings,
                        artifact: ModelArtifact, state: CollectionState | None,
                        paths: CollectionPaths, run_id: str, summary: IngestSummary,
                        errors: list) -> tuple[list[tuple[str, str]], list[str], Codec | None, list]:
    """The Dask part of a run: returns (passages, archive) pairs to load and the embeddings."""
    log = get_run_logger()
    with dask_client(settings.dask) as (client, cluster):
        summary.cluster = f"{cluster.kind}: {cluster.workers} worker(s) × " \
                          f"{cluster.threads_per_worker} thread(s)"
        log.info("run %s on %s", run_id, summary.cluster)
        t = time.perf_counter()
        chunked = stages.chunk_stage(client, plan.to_read, settings, artifact, paths, run_id)
        new_errors = [e for shard in chunked for e in shard.errors]
        for err in new_errors:
            log.warning("input error: %s", err)
        errors = errors + new_errors
        summary.errors = [e.to_dict() for e in errors]
        shards = [url for c in chunked for url in c.urls]
        summary.documents = sum(c.documents for c in chunked)
        summary.passages = sum(c.passages for c in chunked)
        summary.stages.append(StageStat("read + chunk", time.perf_counter() - t, summary.passages))

        splits = stages.reuse_stage(shards, old.reuse if state is not None else ReuseIndex.empty())
        reused = [s.reused for s in splits if s.reused]
        to_embed = [s.to_embed for s in splits if s.to_embed]
        summary.passages_reused = sum(s.reused_rows for s in splits)
        summary.passages_embedded = summary.passages - summary.passages_reused
        if not to_embed:
            return reused, [], None, errors

        t = time.perf_counter()
        embedded = stages.embed_stage(client, to_embed, settings, artifact,
                                      cluster.threads_per_worker, paths, run_id)
        summary.truncated = sum(e.truncated for e in embedded)
        summary.stages.append(StageStat("embed (ONNX " + artifact.variant + ")",
                                        time.perf_counter() - t, summary.passages_embedded))
        t = time.perf_counter()
        codec = stages.codec_stage(embedded, settings, state, paths)
        summary.codec, summary.codec_reused = codec.report, state is not None
        summary.stages.append(StageStat("codec fit (PCA + PQ)" if state is None else "codec reuse",
                                        time.perf_counter() - t, codec.report["train_vectors"],
                                        "vectors"))
        t = time.perf_counter()
        archives = stages.encode_stage(client, embedded, paths.codec_dir(codec.codec_id), paths,
                                       run_id)
        summary.stages.append(StageStat("PCA + PQ encode", time.perf_counter() - t,
                                        summary.passages_embedded))
    pairs = list(zip(to_embed, archives, strict=True)) + reused
    return pairs, [e.url for e in embedded], codec, errors


def _merge(per_pair: Iterable[dict[str, set[int]]]) -> dict[str, set[int]]:
    merged: dict[str, set[int]] = {}
    for sources in per_pair:
        for source, pks in sources.items():
            merged.setdefault(source, set()).update(pks)
    return merged


def _update_manifest(manifest: Manifest, plan: ChangePlan,
                     written: dict[tuple[str, str], dict[str, set[int]]], codec_id: str,
                     run_id: str) -> None:
    parts_of: dict[str, list[tuple[str, str]]] = {}
    rows_of: dict[str, int] = {}
    for pair, sources in written.items():
        for source, pks in sources.items():
            parts_of.setdefault(source, []).append(pair)
            rows_of[source] = rows_of.get(source, 0) + len(pks)
    for src in plan.to_read:
        manifest.entries.pop(src.url, None)
        if not rows_of.get(src.url):
            continue  # nothing usable in it: read (and report) again next run until fixed
        parts = parts_of.get(src.url, [])
        manifest.entries[src.url] = FileEntry(
            path=src.url, size=src.size, modified=src.modified, content_hash=plan.hashes[src.url],
            codec_id=codec_id, run_id=run_id, passages=rows_of.get(src.url, 0),
            passage_parts=[p for p, _ in parts], archive_parts=[a for _, a in parts])
    for path in plan.deleted:
        manifest.entries.pop(path, None)


def _finish(summary: IngestSummary, paths: CollectionPaths, errors: list,
            write_summary: bool = True) -> None:
    run_dir = paths.run_dir(summary.run_id)
    if errors:
        storage.write_json(storage.join(run_dir, "errors.json"), summary.errors)
    if not write_summary:
        return
    storage.write_json(storage.join(run_dir, "summary.json"), summary.to_dict())
    # Full FP32 embeddings are an intermediate (1.5 KB per vector); the archive is what stays.
    storage.remove(storage.join(run_dir, "embeddings"))


def _artifact_dir(artifact: ModelArtifact) -> str:
    return Path(artifact.onnx_path).parent.name


def _drop_collection(settings: Settings, paths: CollectionPaths) -> None:
    store = MilvusStore(settings.milvus)
    try:
        store.drop(settings.collection)
    finally:
        store.close()
    storage.remove(paths.root)
