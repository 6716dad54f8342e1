"""Opening a searcher: the collection's active build, its codec, rescoring store, model and
Milvus, with an error that says which flag to fix for each thing not found; and the snapshot a
searcher follows as rebuilds switch the build that serves."""

from __future__ import annotations

from pathlib import Path

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from vecpress.infra import storage
from vecpress.infra.index_plan import IndexPlan, search_params
from vecpress.infra.milvus_reads import MilvusReads
from vecpress.infra.settings import Settings
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.builds import check_not_legacy, live_shards
from vecpress.tasks.collection.catalog import Build, Catalog
from vecpress.tasks.collection.home import located
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.published import load_published
from vecpress.tasks.search.filter_counts import FilterCounts
from vecpress.tasks.search.rescore_store import RescoreStore
from vecpress.tasks.search.searcher import Searcher, Snapshot


class CollectionNotFoundError(LookupError):
    """Search was asked for a collection this storage root has no record of."""


def rescore_directory(paths: storage.CollectionPaths, build: str) -> Path | None:
    """``<collection>/rescore/<build>`` for a local storage root, else the user cache."""
    root = paths.root.removeprefix("file://")
    return None if "://" in root else Path(root) / "rescore" / build


@retry(retry=retry_if_exception_type(FileNotFoundError), stop=stop_after_attempt(3),
       wait=wait_fixed(0.2), reraise=True)
def snapshot(settings: Settings, catalog: Catalog, versions: tuple[int, ...] = ()
             ) -> Snapshot | None:
    """The active build's snapshot; None when the catalog has not moved since ``versions``.

    A rebuild can retire the build that was active when the catalog was read, and its garbage
    collection (at once under ``gc_grace_s`` 0) remove its archives before they are read: the
    catalog is then read again, and names the new build."""
    now = _versions(catalog)
    if versions and now == versions:
        return None
    return _snapshot_of(settings, catalog, _active(settings, catalog), now)


def _versions(catalog: Catalog) -> tuple[int, ...]:
    return tuple(catalog.version(t) for t in ("builds", "files", "shards"))


def _active(settings: Settings, catalog: Catalog) -> Build:
    build = catalog.active()
    if build is None and (first := catalog.building()) is not None:
        raise CollectionNotFoundError(
            f"collection '{settings.collection}' has no finished build yet: its first ingest "
            f"(run {first.run_id}) is still running or was stopped; run the same vecpress ingest "
            "again to finish it (what it committed is kept), then search")
    if build is None:
        raise CollectionNotFoundError(
            f"no collection '{settings.collection}' under {settings.storage_root}; ingest first "
            "(vecpress ingest PATH --collection NAME) or pass the right --storage-root")
    return build


def _snapshot_of(settings: Settings, catalog: Catalog, build: Build, versions: tuple[int, ...]
                 ) -> Snapshot:
    paths = storage.CollectionPaths(settings.storage_root, settings.collection)
    codec = Codec.load(paths.codec_dir(build.codec_id))
    archives = [a for _, a, _ in live_shards(catalog, build.build)]
    return Snapshot(build.build, codec,
                    RescoreStore(archives, rescore_directory(paths, build.build)), versions,
                    *search_params(settings.milvus, IndexPlan.from_json(build.index)))


def open_searcher(settings: Settings) -> Searcher:
    """A searcher for ``settings.collection`` using the model and codec it was built with.

    Raises ``CollectionNotFoundError`` or ``ModelNotFoundError`` (with what to do) when the
    storage root, the model cache or the Milvus URI is not the one the ingest used.
    """
    storage.configure(settings.storage_root, settings.storage_options)
    storage.check_root(settings.storage_root)
    paths = storage.CollectionPaths(settings.storage_root, settings.collection)
    catalog = Catalog(paths.root)
    check_not_legacy(paths, catalog)
    versions = _versions(catalog)  # read before the build: a newer commit is seen next time
    build = _active(settings, catalog)
    first = _snapshot_of(settings, catalog, build, versions)
    settings = located(settings, build)  # its Milvus and model cache, unless set explicitly
    if settings.milvus.is_lite and not Path(settings.milvus.uri).expanduser().exists():
        # Opening a Lite path creates an empty database there: a read would leave one behind.
        raise CollectionNotFoundError(f"there is no Milvus Lite file at {settings.milvus.uri} to hold "
                                      + _serving(settings, first.collection))
    artifact = _load_artifact(settings.model_cache_dir / build.model_artifact, settings.storage_root)
    embedder = OnnxEmbedder(artifact, settings.model, spin=False)
    try:
        store = MilvusReads(settings.milvus, min(settings.milvus.retry_s,
                                                 settings.search.milvus_wait_s))
    except BaseException:
        embedder.close()
        raise
    try:
        _check_served(store, first.collection, settings)
        return Searcher(store, first.collection, first.codec, embedder, first.rescore,
                        (first.nprobe, first.rescore_factor),
                        follow=lambda seen: snapshot(settings, catalog, seen),
                        versions=first.versions, max_candidates=settings.search.max_candidates,
                        filter_exact_rows=settings.search.filter_exact_rows,
                        max_filter_bytes=settings.search.max_filter_bytes,
                        post_filter_share=_post_filter_share(settings, store),
                        counts=FilterCounts(settings.search.filter_counts,
                                            settings.search.filter_count_ttl_s))
    except BaseException:
        store.close()  # a Milvus Lite file stays locked until its server is stopped
        embedder.close()
        raise


def _post_filter_share(settings: Settings, store: MilvusReads) -> float:
    """``search.post_filter_share``, unset: 0.1 on a server, never on Milvus Lite, whose filtered
    IVF_SQ8 search keeps its recall (0.984 at 50%) and whose key queries are slow (post-filtering
    took 273 ms a query there, p50, against 60: results/filtered_recall_50000_fp32_typed_default_plan)."""
    share = settings.search.post_filter_share
    return share if share is not None else 2.0 if store.settings.is_lite else 0.1


class ModelNotFoundError(FileNotFoundError):
    """The exported model a collection was built with is not where this searcher looks for it."""


def _load_artifact(directory: Path, storage_root: str) -> ModelArtifact:
    """The collection's exported model, or an error that says which cache was looked in: the
    model cache follows --storage-root unless VECPRESS_MODEL__CACHE_DIR moves it. On an
    object-store root a model exported on another host is fetched from the root."""
    if not (directory / "meta.json").is_file() and storage.is_remote(storage_root):
        published = load_published(storage_root, directory.name, directory.parent)
        if published is not None:
            return published
    if not (directory / "meta.json").is_file():
        raise ModelNotFoundError(
            f"the model this collection was built with is not in the model cache: no "
            f"{directory / 'meta.json'}; give the same --storage-root as the ingest (or set "
            "VECPRESS_MODEL__CACHE_DIR to the ingest's model cache)")
    artifact = ModelArtifact.load(directory)
    if not Path(artifact.onnx_path).is_file():
        raise ModelNotFoundError(f"the exported model {artifact.onnx_path} is missing; give the "
                                 "same --storage-root as the ingest, or ingest again to export it")
    if not Path(artifact.model_dir).is_dir():
        raise ModelNotFoundError(
            f"the model directory {artifact.model_dir} (its tokenizer) that {directory.name} was "
            "exported from is gone; restore it, or ingest again with --recreate")
    return artifact


def _check_served(store: MilvusReads, name: str, settings: Settings) -> None:
    """Fail at once, saying which flag to fix, when Milvus does not hold the active build's
    collection (another --milvus-uri than the ingest's): loading it would be retried for 90 s."""
    if not store.has_collection(name):
        raise CollectionNotFoundError(f"Milvus at {settings.milvus.uri} has no collection "
                                      + _serving(settings, name))


def _serving(settings: Settings, name: str) -> str:
    return (f"'{name}', which serves '{settings.collection}' under {settings.storage_root}; "
            "give the same --milvus-uri as the ingest")
