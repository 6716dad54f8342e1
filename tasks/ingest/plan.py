"""From a change plan to a streaming job: the groups to read, and the old shards each changed or
deleted file still has rows in (for vector reuse and for deleting the rows it no longer has)."""

from __future__ import annotations

from dataclasses import asdict

from vecpress.infra.settings import Settings
from vecpress.tasks.collection.catalog import Build, Catalog
from vecpress.tasks.collection.manifest import ChangePlan, Manifest
from vecpress.tasks.ingest.groups import make_groups
from vecpress.tasks.ingest.part_jobs import OldPart
from vecpress.tasks.ingest.results import StreamJob


def stream_job(catalog: Catalog, build: Build, plan: ChangePlan, manifest: Manifest,
               settings: Settings, artifact: str, serving: Build | None = None) -> StreamJob:
    # A build without a codec fits it on its first groups: take them in random order.
    groups = make_groups(plan.to_read, plan.hashes, settings, artifact,
                         shuffle_seed=None if build.codec_id else settings.codec.seed)
    new_group = {f.url: g.group_id for g in groups for f in g.files}
    changed = [f.url for f in plan.changed if f.url in manifest.entries]
    loaded: dict[str, list[tuple[str, str]]] = {}
    if changed or plan.deleted:
        for row in catalog.shards(build.build).to_pylist():
            if row["state"] == "loaded":
                loaded.setdefault(row["group_id"], []).append((row["passages_url"],
                                                               row["archive_url"]))
    old_parts: dict[str, list[OldPart]] = {}
    for old_group, paths in manifest.groups_of(changed).items():
        for target in {new_group[p] for p in paths}:
            mine = tuple(sorted(p for p in paths if new_group[p] == target))
            old_parts.setdefault(target, []).extend((p, a, mine) for p, a in
                                                    loaded.get(old_group, []))
    deleted: list[OldPart] = []
    for old_group, paths in manifest.groups_of(plan.deleted).items():
        deleted.extend((p, a, tuple(sorted(paths))) for p, a in loaded.get(old_group, []))
    restamped = [asdict(manifest.entries[p]) | {"build": build.build} for p in plan.restamped]
    return StreamJob(build, groups, plan.hashes, old_parts, deleted, list(plan.deleted),
                     restamped, serving.build if serving is not None else "")
