"""Rebuild a Milvus collection from a run's or a collection's Parquet archive, without re-embedding.

The archive holds each passage's fp16 PCA vector; the run's passage shards hold its text and ids;
the codec and the model are named by the source collection's ``state.json``. A reindex writes them
into a (new) collection, builds its index, and records a ``state.json`` for it that points at the
same codec and archive, so ``vecpress search --collection NEW`` works at once.
"""

from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass, field

from fsspec.core import url_to_fs

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.codec.codec import Codec
from vecpress.tasks.collection.loading import load_collection
from vecpress.tasks.collection.manifest import Manifest
from vecpress.tasks.collection.state import CollectionState


class ReindexError(ValueError):
    """The source is not an archive this command can rebuild from, or the target does not fit."""


@dataclass
class ReindexSummary:
    source: str
    collection: str
    milvus_uri: str
    codec_id: str
    shards: int
    rows_written: int = 0
    rows_in_milvus: int = 0
    index: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def live_pairs(collection_dir: str) -> dict[tuple[str, str], set[str]] | None:
    """Shard pairs holding the collection's current rows, each with its live input files.

    Read from the manifest of incremental ingests (None for collections written before it): later
    runs delete and rewrite rows, so replaying every run's shards would bring deleted rows back.
    """
    manifest = Manifest.load(storage.join(collection_dir, "manifest.parquet"))
    if not len(manifest):
        return None
    live: dict[tuple[str, str], set[str]] = {}
    for entry in sorted(manifest.entries.values(), key=lambda e: e.run_id):
        for pair in entry.parts():
            live.setdefault(pair, set()).add(entry.path)
    return live


def archive_pairs(source: str) -> tuple[CollectionState, list[tuple[str, str]]]:
    """(source collection state, [(passages shard, archive shard)]) for a collection or run dir."""
    source = source.rstrip("/")
    if storage.exists(storage.join(source, "state.json")):
        state = CollectionState.load(storage.join(source, "state.json"))
        runs = _unique(a.rsplit("/archive/", 1)[0] for a in state.archives)
    elif storage.exists(storage.join(source, "archive")):
        collection_root = posixpath.dirname(posixpath.dirname(source))
        state = CollectionState.load(storage.join(collection_root, "state.json"))
        if state is None:
            raise ReindexError(f"run {source} has no collection state.json two levels up "
                               f"({collection_root}); give the run as it was written: "
                               "<storage_root>/collections/NAME/runs/RUN")
        runs = [source]
    else:
        raise ReindexError(f"{source} is neither a collection directory (with state.json) nor a run "
                           "directory (with archive/); give <storage_root>/collections/NAME or "
                           "<storage_root>/collections/NAME/runs/RUN")
    pairs: list[tuple[str, str]] = []
    for run in runs:
        if storage.exists(storage.join(run, "pairs.json")):  # written by every ingest since
            pairs.extend(tuple(p) for p in storage.read_json(storage.join(run, "pairs.json")))
            continue
        archives, passages = _parts(run, "archive"), _parts(run, "passages")
        if len(archives) != len(passages):
            raise ReindexError(f"run {run} has {len(archives)} archive shards but {len(passages)} "
                               "passage shards; the run did not finish: reindex another run or "
                               "re-ingest")
        pairs.extend(zip(passages, archives, strict=True))
    if not pairs:
        raise ReindexError(f"no archive shards under {source}; nothing to reindex")
    return state, pairs


def reindex(source: str, settings: Settings) -> ReindexSummary:
    """Load every archived passage of ``source`` into ``settings.collection`` and index it."""
    started = time.perf_counter()
    live = live_pairs(source.rstrip("/"))  # a collection written by incremental ingests
    if live is not None:
        state, pairs = CollectionState.load(storage.join(source.rstrip("/"), "state.json")), list(live)
    else:
        state, pairs = archive_pairs(source)
    codec = Codec.load(state.codec_dir)
    target = CollectionPaths(settings.storage_root, settings.collection)
    existing = CollectionState.load(target.state)
    if existing is not None and existing.codec_id != state.codec_id:
        raise ReindexError(f"collection '{settings.collection}' already exists with codec "
                           f"{existing.codec_id}, the archive uses codec {state.codec_id}; choose "
                           "another --collection")
    summary = ReindexSummary(source=source, collection=settings.collection,
                             milvus_uri=settings.milvus.uri, codec_id=codec.codec_id,
                             shards=len(pairs))
    store = MilvusStore(settings.milvus)
    try:
        loaded = load_collection(store, settings.collection, codec, pairs, live=live)
        summary.rows_written, summary.index = loaded.rows_written, loaded.index
        summary.rows_in_milvus = loaded.rows_in_milvus
    finally:
        store.close()
    new_state = existing or CollectionState(
        collection=settings.collection, model_artifact_dir=state.model_artifact_dir,
        model_variant=state.model_variant, codec_id=state.codec_id, codec_dir=state.codec_dir)
    archives = [a for _, a in pairs]
    new_state.archives = [a for a in new_state.archives if a not in archives] + archives
    new_state.runs = _unique([*new_state.runs, *(a.rsplit("/archive/", 1)[0].rsplit("/", 1)[-1]
                                                 for a in archives)])
    new_state.save(target.state)
    summary.seconds = time.perf_counter() - started
    return summary


def _parts(run: str, stage: str) -> list[str]:
    """The run's shard files of one stage, in the order the ingest wrote them."""
    fs, path = url_to_fs(storage.join(run, stage))
    if not fs.exists(path):
        return []
    names = sorted(posixpath.basename(p) for p in fs.ls(path, detail=False)
                   if p.endswith(".parquet"))
    return [storage.join(run, stage, name) for name in names]


def _unique(items) -> list[str]:
    return list(dict.fromkeys(items))
