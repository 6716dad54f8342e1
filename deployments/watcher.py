"""Turn file changes under watched folders or object-store prefixes into Prefect events.

Local folders are watched with watchfiles (inotify); fsspec URLs (s3://, gs://, memory:// ...)
are listed every ``poll_s`` seconds. Both are debounced: a burst of changes (20 files copied at
once) becomes one ``vecpress.files.changed`` event carrying all their paths, and the on-change
deployment's trigger runs one ingest with them. Files vecpress cannot read, and anything under
the storage root (its own output), are ignored.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import watchfiles
from fsspec.core import url_to_fs
from prefect.events import emit_event

from vecpress.deployments.definitions import FILES_CHANGED, watch_resource
from vecpress.infra.settings import InputSettings, ServeSettings
from vecpress.tasks.inputs.sources import input_kind, modified_stamp

log = logging.getLogger("vecpress.watcher")


@dataclass
class FileChanges:
    added: set[str] = field(default_factory=set)
    modified: set[str] = field(default_factory=set)
    deleted: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.deleted)

    @property
    def paths(self) -> list[str]:
        return sorted(self.added | self.modified | self.deleted)

    def payload(self) -> dict[str, list[str]]:
        return {"paths": self.paths, "added": sorted(self.added), "modified": sorted(self.modified),
                "deleted": sorted(self.deleted)}

    @classmethod
    def from_watchfiles(cls, batch: set[tuple[watchfiles.Change, str]]) -> FileChanges:
        """The last change of each path wins (created then deleted within a burst: deleted)."""
        last: dict[str, watchfiles.Change] = {}
        for change, path in sorted(batch, key=lambda c: c[0].value):
            last[path] = change
        out = cls()
        for path, change in last.items():
            target = {watchfiles.Change.added: out.added, watchfiles.Change.modified: out.modified,
                      watchfiles.Change.deleted: out.deleted}[change]
            target.add(path)
        return out


class InputFilter:
    """Readable input files outside the pipeline's own output folders."""

    def __init__(self, inputs: InputSettings, excluded: list[str]) -> None:
        self.inputs = inputs
        self.excluded = [str(Path(p).resolve()) for p in excluded]

    def __call__(self, path: str) -> bool:
        if input_kind(path, self.inputs) is None:
            return False
        resolved = str(Path(path).resolve()) if "://" not in path else path
        return not any(resolved == e or resolved.startswith(e + "/") for e in self.excluded)


def watch_local(folders: list[str], accept: Callable[[str], bool], debounce_s: float,
                stop: threading.Event) -> Iterator[FileChanges]:
    """Debounced change sets under local folders: yielded after ``debounce_s`` of quiet."""
    quiet_ms = int(debounce_s * 1000)
    for batch in watchfiles.watch(*folders, watch_filter=lambda _c, p: accept(p),
                                  step=quiet_ms, debounce=max(10 * quiet_ms, 10_000),
                                  stop_event=stop, raise_interrupt=False):
        changes = FileChanges.from_watchfiles(batch)
        if changes:
            yield changes


def listing(url: str, accept: Callable[[str], bool]) -> dict[str, tuple[int, str]]:
    """{url: (size, stamp)} of the readable files under an fsspec URL."""
    fs, root = url_to_fs(url)
    out = {}
    for path, info in fs.find(root, detail=True).items():
        full = fs.unstrip_protocol(path)
        if info.get("type") != "directory" and accept(full):
            out[full] = (int(info.get("size") or 0), modified_stamp(info))
    return out


def diff_listings(before: dict[str, tuple[int, str]],
                  after: dict[str, tuple[int, str]]) -> FileChanges:
    return FileChanges(added=set(after) - set(before),
                       modified={p for p in set(after) & set(before) if after[p] != before[p]},
                       deleted=set(before) - set(after))


def poll_urls(urls: list[str], accept: Callable[[str], bool], poll_s: float,
              stop: threading.Event) -> Iterator[FileChanges]:
    """Changes between listings, reported once a listing is stable for one more interval."""
    seen = {u: listing(u, accept) for u in urls}
    pending = FileChanges()
    while not stop.wait(poll_s):
        stable = True
        for url in urls:
            now = listing(url, accept)
            step = diff_listings(seen[url], now)
            if step:
                stable = False
                pending.added |= step.added - pending.deleted
                pending.modified |= step.modified
                pending.deleted |= step.deleted
                pending.added -= step.deleted
            seen[url] = now
        if stable and pending:
            yield pending
            pending = FileChanges()


def emit_changes(collection: str, changes: FileChanges) -> None:
    emit_event(event=FILES_CHANGED,
               resource={"prefect.resource.id": watch_resource(collection),
                         "prefect.resource.name": f"vecpress watch of '{collection}'"},
               payload=changes.payload())
    log.info("%d file change(s) for '%s': %d new, %d modified, %d deleted", len(changes.paths),
             collection, len(changes.added), len(changes.modified), len(changes.deleted))


def start_watchers(collection: str, serve: ServeSettings, accept: Callable[[str], bool],
                   stop: threading.Event) -> list[threading.Thread]:
    """One daemon thread for local folders, one for polled URLs; each emits events until stop."""
    local = [w for w in serve.watched if "://" not in w or w.startswith("file://")]
    remote = [w for w in serve.watched if w not in local]
    for folder in local:
        Path(folder.removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    def run(source: Iterator[FileChanges]) -> None:
        for changes in source:
            try:
                emit_changes(collection, changes)
            except Exception:  # keep watching; the next burst is another chance
                log.exception("could not emit a file-change event")

    threads = []
    if local:
        folders = [f.removeprefix("file://") for f in local]
        threads.append(threading.Thread(target=run, name="vecpress-watch-local", daemon=True,
                                        args=(watch_local(folders, accept, serve.debounce_s, stop),)))
    if remote:
        threads.append(threading.Thread(target=run, name="vecpress-watch-poll", daemon=True,
                                        args=(poll_urls(remote, accept, serve.poll_s, stop),)))
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # let watchfiles register its watches before callers change files
    return threads
