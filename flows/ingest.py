"""The ingest flow: durable, resumable, streaming, incremental by default.

discover → compare with the build's files in the catalog (new / changed / unchanged / deleted) →
stream the shard groups of new and changed files through chunk → embed → encode → load, each
shard committed as it lands → index → drift check → switch a rebuild over → checks → GC.

Orchestration only: the stages live in flows/stages.py, their logic in tasks/.
"""

from __future__ import annotations

import errno
import time
from typing import cast

from prefect import flow, get_run_logger

from vecpress.flows import stages
from vecpress.flows.artifacts import publish_failure, publish_summary
from vecpress.flows.progress import HEADLINE
from vecpress.infra import storage
from vecpress.infra.locks import collection_lock
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.choose import CodecDriftError, outgrown, reuse_codec
from vecpress.tasks.collection.builds import check_not_legacy, choose_build, finish_build
from vecpress.tasks.collection.catalog import Build, Catalog
from vecpress.tasks.collection.home import check_same_milvus, home_of, located
from vecpress.tasks.collection.manifest import Manifest, plan_changes
from vecpress.tasks.collection.state import new_run_id
from vecpress.tasks.ingest import headlines
from vecpress.tasks.ingest.plan import stream_job
from vecpress.tasks.inputs.eval_queries import read_eval_queries
from vecpress.tasks.inputs.sources import discover
from vecpress.tasks.report.summary import IngestSummary, StageStat, bytes_per_vector


class StorageFullError(OSError):
    """The storage root ran out of space; what was committed before is intact."""


@flow(name="vecpress-ingest", log_prints=True)
def ingest_flow(sources: list[str], settings: Settings, eval_queries: str | None = None,
                recreate: bool = False, full: bool = False) -> IngestSummary:
    """Bring ``settings.collection`` up to date with ``sources``; return the run summary.

    Only new and changed files are read; rows of deleted files are removed. Every shard's
    progress is committed as it lands: a run that dies is finished by running it again. One
    run per collection at a time: a run that finds the collection busy waits for its turn.

    Args:
        sources: Files, folders, globs or fsspec URLs; a known file that is gone is deleted.
        settings: Collection, model, codec, Milvus and Dask settings of the run.
        eval_queries: JSONL of held-out {id, text} queries: report recall@10 vs exact FP32.
        recreate: Rebuild the collection from ``sources`` into a new build; the current one
            serves until the new one is complete.
        full: Read every file again (unchanged passage text still reuses its vectors).
    """
    log = get_run_logger()
    settings = _with_secret_token(settings)
    storage.configure(settings.storage_root, settings.storage_options)
    # Read first (it is small and bounded): a bad or missing file is a user error said now, not
    # after every shard was loaded (exit 2), and the lock is not waited for in vain.
    queries = read_eval_queries(eval_queries, settings.inputs) if eval_queries else None
    storage.check_root(settings.storage_root)
    with collection_lock(settings.storage_root, settings.collection, logger=log,
                         lease_ttl_s=settings.lease_ttl_s):
        try:
            summary = _ingest_or_explain(sources, settings, queries, recreate, full)
        except Exception as exc:
            publish_failure(settings.collection, exc, sources)
            raise
    publish_summary(summary, CollectionPaths(settings.storage_root, settings.collection)
                    .run_dir(summary.run_id))
    return summary


def _with_secret_token(settings: Settings) -> Settings:
    """The Milvus token from the Prefect Secret block ``milvus.token_secret``, when one is named
    and no token was given: deployments then carry the block's name, never the token."""
    milvus = settings.milvus
    if not milvus.token_secret or milvus.token.get_secret_value():
        return settings
    from prefect.blocks.system import Secret
    from pydantic import SecretStr

    # In a sync flow Prefect's dual sync/async API returns the block itself.
    secret = cast(Secret, Secret.load(milvus.token_secret))
    token = SecretStr(str(secret.get()))
    return settings.model_copy(update={"milvus": milvus.model_copy(update={"token": token})})


def _ingest_or_explain(sources: list[str], settings: Settings, eval_queries: list[str] | None,
                       recreate: bool, full: bool) -> IngestSummary:
    """``_ingest``, with a full storage root said plainly."""
    try:
        return _ingest(sources, settings, eval_queries, recreate, full)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageFullError(
                errno.ENOSPC, f"no space left under the storage root {settings.storage_root} "
                f"({exc}); every shard committed before is kept: free space and run the same "
                "ingest again to finish") from exc
        raise


def _ingest(sources: list[str], settings: Settings, eval_queries: list[str] | None,
            recreate: bool, full: bool, retraining: bool = False) -> IngestSummary:
    """The run itself; ``eval_queries``: the texts of the held-out queries, read up front."""
    log = get_run_logger()
    paths = CollectionPaths(settings.storage_root, settings.collection)
    catalog = Catalog(paths.root)
    if not recreate:  # --recreate is the way out of a collection written before the catalog
        check_not_legacy(paths, catalog)
    active = catalog.active()
    settings = located(settings, active)  # its Milvus and model cache, unless set explicitly
    if not recreate:
        check_same_milvus(settings, active)
    run_id = new_run_id()
    summary = IngestSummary(run_id=run_id, collection=settings.collection,
                            milvus_uri=settings.milvus.uri)
    started = time.perf_counter()
    artifact = stages.prepare_model(settings, sources)
    seconds = time.perf_counter() - started
    summary.stages.append(StageStat("model: export, or its cache", seconds, 1, "models"))
    log.info(headlines.model_line(artifact, seconds), extra=HEADLINE)
    chunking = settings.chunk.model_dump(mode="json")
    build, full = choose_build(catalog, settings.collection, active, artifact, chunking, run_id,
                               recreate, full)
    summary.build = build.build
    if build.build != getattr(active, "build", None):
        log.info("writing build %s (serving: %s)", build.build, getattr(active, "build", "none"),
                 extra=HEADLINE)

    started = time.perf_counter()
    manifest = Manifest.from_table(catalog.files(build.build))
    files, errors = discover(sources, settings.inputs)
    plan, errors = plan_changes(sources, files, errors, manifest, reread_all=full)
    summary.files, summary.changes = len(files), plan.counts()
    summary.add_errors(errors)
    for err in errors:
        log.warning("input error: %s", err)
    log.info(headlines.files_line(plan.counts()), extra=HEADLINE)
    job = stream_job(catalog, build, plan, manifest, settings, artifact.name, active)
    summary.stages.append(StageStat("discover + compare with catalog",
                                    time.perf_counter() - started, len(files), "files"))
    if plan.is_empty and not plan.unchanged and errors:
        # Nothing under the sources, on disk or in the collection: the same "no usable input"
        # as on a new collection (exit 2), not "up to date" (a mistyped path exited 0).
        raise _no_usable_input(summary, sources, paths.run_dir(run_id))
    if plan.is_empty and build.status == "active" and (len(manifest) or not errors):
        log.info("collection '%s' is up to date with %s", settings.collection, sources,
                 extra=HEADLINE)
        catalog.upsert("files", job.restamped)
        summary.add_gc(*stages.gc_stage(settings, None))
        summary.save(paths.run_dir(run_id))
        return summary

    streamed, summary.cluster = stages.stream_stage(settings, job, artifact, run_id)
    summary.add_stream(streamed)
    log.info(headlines.stream_line(streamed), extra=HEADLINE)
    for line in headlines.skipped_lines(streamed.errors, paths.run_dir(run_id)):
        log.warning(line)
    catalog.upsert("files", job.restamped)
    codec = streamed.codec
    if codec is None or (plan.to_read and not streamed.passages and not streamed.rows_deleted
                         and not plan.unchanged):
        # Nothing readable and nothing to delete: fail clearly, change nothing.
        raise _no_usable_input(summary, sources, paths.run_dir(run_id))
    build = catalog.builds_by_name()[build.build]
    indexed, seconds = stages.index_stage(settings, build, codec)
    summary.add_load(indexed, streamed.rows_written, streamed.rows_deleted, seconds)
    log.info(headlines.index_line(indexed, seconds), extra=HEADLINE)
    if outgrown(codec, indexed.rows_in_milvus, settings.codec):
        if retraining:
            log.warning("the codec of '%s' was fitted again and still keeps whole vectors (%s); "
                        "the build serves them", settings.collection, codec.report.get("reason"))
        else:
            log.info("collection '%s' now holds %d passages: fitting its codec into a new build "
                     "(it kept whole vectors while small)", settings.collection,
                     indexed.rows_in_milvus, extra=HEADLINE)
            return _retrain(catalog, build, sources, settings, eval_queries)
    if not streamed.codec_trained and streamed.drift_sample:
        try:
            report = reuse_codec(codec, streamed.drift_vectors(), settings.codec)
        except CodecDriftError as drift:
            log.warning("%s: retraining the codec into a new build of '%s'; the current build "
                        "serves until it is complete", drift, settings.collection)
            return _retrain(catalog, build, sources, settings, eval_queries)
        summary.codec = codec.report  # now with the drift verdict
        if report is not None and report.drifted:
            log.warning(report.message())
    store = MilvusStore(settings.milvus)
    try:
        was = build.status
        build = finish_build(catalog, store, settings.collection, build, active, chunking,
                             home_of(settings), indexed.plan)
    finally:
        store.close()
    if was == "building":
        log.info("build %s now serves '%s'", build.build, settings.collection, extra=HEADLINE)
    if streamed.first_passages:
        whole = len(streamed.fp32_urls) == streamed.shards  # exact truth needs every FP32 vector
        if eval_queries and not whole:
            log.warning("recall@10 not measured: exact FP32 truth needs every passage's FP32 "
                        "vector, and %d of this run's %d shards kept one (only a first run of at "
                        "most codec.sample_size = %d passages keeps them all)",
                        len(streamed.fp32_urls), streamed.shards, settings.codec.sample_size)
        checked = stages.check_stage(settings, build, artifact, codec, streamed.first_passages,
                                     streamed.fp32_urls if whole else [], eval_queries)
        summary.add_check(checked)
        log.info(headlines.check_line(checked), extra=HEADLINE)
    for url in streamed.fp32_urls:  # FP32 embeddings are an intermediate: the archive stays
        storage.remove(url)
    started = time.perf_counter()
    collected, footprint = stages.gc_stage(settings, build.build)
    summary.add_gc(collected, footprint, time.perf_counter() - started)
    summary.bytes_per_vector = bytes_per_vector(artifact.dim, codec.report, summary.index)
    summary.save(paths.run_dir(run_id))
    return summary


def _retrain(catalog: Catalog, build: Build, sources: list[str], settings: Settings,
             eval_queries: list[str] | None) -> IngestSummary:
    """Ingest every file of ``build`` (and ``sources``) again into a new build with a new codec."""
    everything = sorted(set(Manifest.from_table(catalog.files(build.build)).entries) | set(sources))
    return _ingest(everything, settings, eval_queries, recreate=True, full=True, retraining=True)


def _no_usable_input(summary: IngestSummary, sources: list[str], run_dir: str) -> ValueError:
    """The run's report saved, and the error of a run with no usable input (exit 2)."""
    summary.save(run_dir)
    first = summary.errors[0] if summary.errors else None
    return ValueError(f"no passages to ingest from {sources}: {len(summary.errors)} input "
                      f"error(s), first: {_error_line(first)}")


def _error_line(error: dict | None) -> str:
    if error is None:
        return "-"
    where = f"{error['source']}:{error['location']}" if error["location"] else error["source"]
    return f"{where}: {error['message']}" + (f" ({error['hint']})" if error["hint"] else "")
