"""Garbage collection: what no build needs any more is removed, never while a reader may use it.

Kept: shard groups that hold rows of a live file (in the ``files`` table of the active build or of
a build in progress) or that a build in progress is still working on, and their archive shards of
the codecs those builds use. Removed after ``gc_grace_s``: groups no file points to any more
(superseded by changed files, left by failed runs), FP32 embedding shards of encoded shards,
token-id sidecars of shards a stopped run never embedded,
archives of codecs no build uses, retired builds (their Milvus collection, codec, catalog rows
and, on a local root, rescoring store). Stale shard rows leave the ledger in the same pass, and
so does the rescoring store of any build the catalog no longer has live (left by an earlier
version, which kept them).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from vecpress.infra import storage
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.catalog import Catalog, age_s
from vecpress.tasks.inputs.token_sidecar import is_sidecar


@dataclass
class GcResult:
    groups_removed: int = 0
    files_removed: int = 0
    builds_dropped: list[str] = field(default_factory=list)


def collect_garbage(paths: CollectionPaths, catalog: Catalog, store: MilvusStore,
                    grace_s: float) -> GcResult:
    result = GcResult()
    builds = catalog.builds()
    live = [b for b in builds if b.status in ("active", "building")]
    live_names = {b.build for b in live}
    codecs = {b.codec_id for b in live if b.codec_id}
    referenced: set[str] = set()
    for build in live:
        referenced |= set(catalog.files(build.build).column("group_id").to_pylist())
        if build.status == "building":
            referenced |= set(catalog.shards(build.build).column("group_id").to_pylist())
    by_group: dict[str, list[str]] = {}
    for url in storage.find(paths.shards):  # one listing, not one per group
        group = posixpath.basename(posixpath.dirname(url))
        by_group.setdefault(group, []).append(url)
    for group, urls in by_group.items():
        group_url = storage.join(paths.shards, group)
        meta = next((u for u in urls if posixpath.basename(u) == "group.json"), None)
        if group not in referenced:
            if meta is None or storage.modified_age_s(meta) >= grace_s:
                storage.remove(group_url)
                result.groups_removed += 1
            continue
        for url in urls:
            name = posixpath.basename(url)
            old_codec = name.startswith("archive-") and _archive_codec(name) not in codecs
            if (old_codec or name.startswith("embeddings-") or is_sidecar(url)) and \
                    storage.modified_age_s(url) >= grace_s:
                storage.remove(url)
                result.files_removed += 1
    shards = catalog.read("shards")
    dead = [{"build": b, "shard_id": s} for b, s, g in zip(
        shards.column("build").to_pylist(), shards.column("shard_id").to_pylist(),
        shards.column("group_id").to_pylist(), strict=True)
        if b not in live_names or g not in referenced]
    catalog.delete("shards", dead)
    for build in builds:
        if build.status == "retired" and age_s(build.updated) >= grace_s:
            store.drop(build.build)
            files = catalog.files(build.build).column("path").to_pylist()
            catalog.delete("files", [{"build": build.build, "path": p} for p in files])
            catalog.save_build(replace(build, status="dropped"))
            if build.codec_id and build.codec_id not in codecs:
                storage.remove(paths.codec_dir(build.codec_id))
            result.builds_dropped.append(build.build)
    _remove_rescore_stores(paths, {b.build for b in builds if b.status != "dropped"}
                           - set(result.builds_dropped), result)
    catalog.compact()  # fold the run's many small commits (one per second of streaming)
    return result


def _remove_rescore_stores(paths: CollectionPaths, kept: set[str], result: GcResult) -> None:
    """Remove ``<collection>/rescore/<build>`` of every build not in ``kept`` (a retired build's
    store stays while its Milvus collection does: searches may still be reading both). Only
    local roots have them; an object-store root's store lives in the search host's cache."""
    rescore = storage.join(paths.root, "rescore")
    if storage.is_remote(rescore):
        return
    for url in storage.listdir(rescore):
        if posixpath.basename(url.rstrip("/")) not in kept:
            storage.remove(url)
            result.files_removed += 1


def _archive_codec(name: str) -> str:
    """The codec id in an archive shard's name, ``archive-<codec id>-NNNN.<suffix>``. An exact
    codec's id has a hyphen of its own (``exact-<hash>``): splitting on the first one read
    "exact", which no build uses, so GC removed the archives of every exact collection."""
    return name.removeprefix("archive-").rsplit("-", 1)[0]
