"""Rebuild a Milvus collection from a collection's archive, without re-embedding.

The archive holds each passage's PCA vector, as the codec's refiner codes it; the passage shards
hold its text and ids; the source collection's catalog names the codec, the model and which shards
hold live rows. A reindex writes them into a new build of the target collection, builds its
index, records the build in the target's catalog (pointing at the same shards) and switches the
name over only when it is complete, so search keeps working on the old build meanwhile.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.builds import check_not_legacy, live_shards, new_build, switch
from vecpress.tasks.collection.catalog import Catalog
from vecpress.tasks.collection.home import home_of
from vecpress.tasks.collection.loading import load_collection
from vecpress.tasks.collection.state import new_run_id


class ReindexError(ValueError):
    """The source is not an archive this command can rebuild from, or the target does not fit."""


@dataclass
class ReindexSummary:
    source: str
    collection: str
    milvus_uri: str
    codec_id: str
    shards: int
    build: str = ""
    rows_written: int = 0
    rows_in_milvus: int = 0
    index: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def reindex(source: str, settings: Settings) -> ReindexSummary:
    """Load every live archived passage of collection ``source`` into a new build of
    ``settings.collection``, index it, and switch the name over when it is complete."""
    started = time.perf_counter()
    source = source.rstrip("/")
    origin = Catalog(source)
    if not origin.exists():
        raise ReindexError(f"{source} is not a collection directory with a catalog/ (written by "
                           "vecpress ingest); give <storage_root>/collections/NAME")
    built = origin.active()
    if built is None or not built.codec_id:
        raise ReindexError(f"collection {source} has no complete build to reindex from; finish "
                           "its ingest first (run it again)")
    parts = live_shards(origin, built.build)
    if not parts:
        raise ReindexError(f"no archive shards under {source}; nothing to reindex")
    codec = Codec.load(storage.join(source, "codecs", built.codec_id))
    target = CollectionPaths(settings.storage_root, settings.collection)
    catalog = Catalog(target.root)
    check_not_legacy(target, catalog)
    serving = catalog.active()
    pending = catalog.building()
    if pending is not None:  # an interrupted rebuild: this one replaces it
        catalog.save_build(replace(pending, status="retired"))
    if not storage.exists(target.codec_dir(codec.codec_id)):
        codec.save(target.codec_dir(codec.codec_id))
    build = new_build(catalog, settings.collection, built.model_artifact, built.model_variant,
                      json.loads(built.chunking), new_run_id())
    build = replace(build, codec_id=codec.codec_id, **home_of(settings))
    catalog.save_build(build)
    summary = ReindexSummary(source=source, collection=settings.collection,
                             milvus_uri=settings.milvus.uri, codec_id=codec.codec_id,
                             shards=len(parts), build=build.build)
    store = MilvusStore(settings.milvus)
    try:
        # Without --typed-fields, the new build keeps the typed fields of the one it rebuilds.
        typed = store.resolve_typed(settings.metadata, build.build, built.build)
        loaded = load_collection(store, build.build, codec, [(p, a) for p, a, _ in parts],
                                 live={(p, a): set(s) for p, a, s in parts}, metadata=typed)
        summary.rows_written, summary.index = loaded.rows_written, loaded.index
        summary.rows_in_milvus = loaded.rows_in_milvus
        _copy_rows(origin, built.build, catalog, build.build, {p for p, _, _ in parts})
        if loaded.plan is not None:  # how it is searched: recorded with the build
            build = replace(build, index=loaded.plan.to_json())
        switch(catalog, store, settings.collection, build, serving)
    finally:
        store.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _copy_rows(origin: Catalog, source_build: str, catalog: Catalog, build: str,
               passages: set[str]) -> None:
    """The new build's files and shards: the source build's live ones, pointing at the same
    Parquet shards (nothing is copied)."""
    files = [r | {"build": build} for r in origin.files(source_build).to_pylist()]
    shards = [r | {"build": build} for r in origin.shards(source_build).to_pylist()
              if r["passages_url"] in passages]
    catalog.upsert("shards", shards)
    catalog.upsert("files", files)
