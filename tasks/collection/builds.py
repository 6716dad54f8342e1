"""Builds: the physical Milvus collections behind a collection's name, and the switch between them.

A collection name is served by one *active* build (``<name>__v<N>``). ``--recreate``, a drift
retrain and a reindex write a new build beside it and switch the name over only when it is
complete: one catalog commit (new build active, old one retired) and, on a Milvus server, the
alias ``<name>`` moved to the new collection. Milvus Lite has no aliases; there the catalog's
pointer is the only name. A failed rebuild leaves the old build serving; the retired one is
dropped by garbage collection after a grace period, so searches that started before the switch
finish on it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Protocol

from vecpress.infra import storage
from vecpress.infra.index_plan import IndexPlan
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.catalog import Build, Catalog, chunking_key

if TYPE_CHECKING:  # the search path imports this module, and no pymilvus
    from vecpress.infra.milvus import MilvusStore


class ArtifactName(Protocol):
    """What a build records of the exported model it is read with.

    ``tasks.embed.artifact.ModelArtifact`` is the one that fits; ``tasks/collection`` may not import
    ``tasks/embed`` (docs/architecture.md), so it states the two properties it reads instead.
    """

    @property
    def name(self) -> str:
        """The artifact's cache directory name: model, variant and content key."""
        ...

    @property
    def variant(self) -> str: ...


class LegacyCollectionError(RuntimeError):
    """A collection written by an earlier vecpress (state.json, no catalog)."""


def check_not_legacy(paths: CollectionPaths, catalog: Catalog) -> None:
    if storage.exists(paths.state) and not catalog.exists():
        raise LegacyCollectionError(
            f"{paths.root} was written by an earlier vecpress (state.json, no catalog/); ingest "
            "it again with --recreate (the old collection keeps serving until the new build "
            "is complete) or use another --collection")


def new_build(catalog: Catalog, collection: str, artifact: str, variant: str, chunking: dict,
              run_id: str) -> Build:
    """A new build, recorded as ``building`` (it serves nothing until switched to)."""
    number = len(catalog.builds()) + 1
    build = Build(f"{collection}__v{number}", "building", "", artifact, variant,
                  chunking_key(chunking), run_id)
    catalog.save_build(build)
    return build


def finish_build(catalog: Catalog, store: MilvusStore, collection: str, build: Build,
                 serving: Build | None, chunking: dict, home: dict[str, str],
                 plan: IndexPlan | None = None) -> Build:
    """After a complete run: record its chunking, where it lives (``home.home_of``) and how it
    is indexed and searched (``plan``), and switch the name to a new build."""
    done = replace(build, chunking=chunking_key(chunking), **home,
                   index=plan.to_json() if plan else build.index)
    if build.status == "building":
        return switch(catalog, store, collection, done, serving)
    if done != build:
        catalog.save_build(done)
    return done


def switch(catalog: Catalog, store: MilvusStore, collection: str, new: Build,
           old: Build | None) -> Build:
    """Make ``new`` serve the name: one catalog commit, then the server alias follows it."""
    active = replace(new, status="active")
    if old is not None and old.build != new.build:
        catalog.save_build(active, replace(old, status="retired"))
    else:
        catalog.save_build(active)
    store.point_alias(collection, new.build)
    return active


def live_shards(catalog: Catalog, build: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """(passages, archive, live files) of every loaded shard that holds rows of a live file of
    ``build``, oldest run first (a later shard's row wins where a changed file kept its keys)."""
    files = catalog.files(build)
    sources: dict[str, list[str]] = {}
    for path, group in zip(files.column("path").to_pylist(), files.column("group_id").to_pylist(),
                           strict=True):
        sources.setdefault(group, []).append(path)
    rows = [r for r in catalog.shards(build).to_pylist()
            if r["state"] == "loaded" and r["group_id"] in sources]
    rows.sort(key=lambda r: (r["run_id"], r["shard_id"]))
    return [(r["passages_url"], r["archive_url"], tuple(sorted(sources[r["group_id"]])))
            for r in rows]


def choose_build(catalog: Catalog, collection: str, active: Build | None, artifact: ArtifactName,
                 chunking: dict, run_id: str, recreate: bool, full: bool) -> tuple[Build, bool]:
    """The build this run writes, and whether every file must be read again.

    An incremental run writes the active build. ``recreate`` (and the first run) writes a new
    build, or resumes the one an interrupted rebuild left with the same model and chunking.
    Changed chunk settings read every file again into the active build.
    """
    name, variant = artifact.name, artifact.variant
    key = chunking_key(chunking)
    if active is not None and not recreate:
        if active.model_artifact != name:
            raise ValueError(f"collection '{collection}' was built with another model, variant or "
                             "prompts "
                             f"({active.model_artifact}); use --recreate or a new collection")
        if active.chunking != key:
            return active, True  # every file is read again; finish_build records the chunking
        return active, full
    pending = catalog.building()
    if pending is not None:
        if pending.model_artifact == name and pending.chunking == key:
            return pending, full  # resume the interrupted build
        catalog.save_build(replace(pending, status="retired"))
    return new_build(catalog, collection, name, variant, chunking, run_id), full
