"""Incremental building blocks on real files: the change plan, the collection lock, the watchers."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from dataclasses import asdict
from pathlib import Path

import fsspec
import pytest

from vecpress.deployments.watcher import FileChanges, InputFilter, poll_urls, watch_local
from vecpress.infra.locks import collection_lock
from vecpress.infra.settings import InputSettings
from vecpress.tasks.collection.catalog import Catalog, ShardRow
from vecpress.tasks.collection.manifest import (
    KEPT_HINT,
    FileEntry,
    Manifest,
    content_hash,
    plan_changes,
)
from vecpress.tasks.ingest.ledger import COMMIT_EVERY_S, COMMIT_SHARE, Ledger
from vecpress.tasks.inputs.records import InputError
from vecpress.tasks.inputs.sources import discover

INPUTS = InputSettings()


def _manifest_of(sources: list[str], tmp_path: Path) -> Manifest:
    files, _ = discover(sources, INPUTS)
    catalog = Catalog(str(tmp_path / "collection"))
    catalog.upsert("files", [asdict(FileEntry(f.url, f.size, f.modified, content_hash(f.url), "g"))
                             | {"build": "b"} for f in files])
    return Manifest.from_table(catalog.files("b"))  # through the catalog's Delta table


def test_plan_sorts_files_into_new_changed_unchanged_deleted(tmp_path: Path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("keep", "touch", "edit", "gone"):
        (src / f"{name}.md").write_text(f"text of {name}")
    manifest = _manifest_of([str(src)], tmp_path)
    assert len(manifest) == 4

    later = time.time() + 5
    os.utime(src / "touch.md", (later, later))  # new stamp, same bytes: not a change
    (src / "edit.md").write_text("edited text, longer than before")
    (src / "gone.md").unlink()
    (src / "new.md").write_text("a new file")

    files, errors = discover([str(src)], INPUTS)
    plan, errors = plan_changes([str(src)], files, errors, manifest)
    names = {k: sorted(Path(f.url if hasattr(f, "url") else f).name for f in v)
             for k, v in (("new", plan.new), ("changed", plan.changed),
                          ("unchanged", plan.unchanged), ("deleted", plan.deleted))}
    assert names == {"new": ["new.md"], "changed": ["edit.md"],
                     "unchanged": ["keep.md", "touch.md"], "deleted": ["gone.md"]}
    assert not errors and set(plan.hashes) == {f.url for f in plan.new + plan.changed}


def test_a_named_file_that_is_gone_is_a_deletion_not_an_error(tmp_path: Path):
    (tmp_path / "a.md").write_text("alpha")
    manifest = _manifest_of([str(tmp_path / "a.md")], tmp_path)
    (tmp_path / "a.md").unlink()
    files, errors = discover([str(tmp_path / "a.md"), str(tmp_path / "never.md")], INPUTS)
    plan, errors = plan_changes([str(tmp_path / "a.md"), str(tmp_path / "never.md")], files,
                                errors, manifest)
    assert [Path(p).name for p in plan.deleted] == ["a.md"]
    assert [Path(e.source).name for e in errors] == ["never.md"]  # unknown path: still an error


def test_a_named_folder_that_is_gone_deletes_nothing_an_emptied_one_deletes_its_files(
        tmp_path: Path):
    """A folder that no longer exists (a typo, an unmounted drive) or cannot be listed keeps the
    collection's files from it, with an error that says so (it deleted them all, exit 0); a folder
    that exists without them deletes them, as a file named on its own and gone does."""
    src = tmp_path / "docs"
    (src / "sub").mkdir(parents=True)
    for name in ("a.md", "b.md", "sub/c.md"):
        (src / name).write_text(f"text of {name}")
    (tmp_path / "other.md").write_text("another source")
    sources = [str(src), str(tmp_path / "other.md")]
    manifest = _manifest_of(sources, tmp_path)
    src.rename(tmp_path / "moved")
    files, errors = discover(sources, INPUTS)
    plan, errors = plan_changes(sources, files, errors, manifest)
    assert plan.deleted == [] and [Path(f.url).name for f in plan.unchanged] == ["other.md"]
    assert [(Path(e.source).name, e.hint) for e in errors] == [("docs", KEPT_HINT)]
    assert "no such file or directory; the collection's 3 file(s) from it are kept" in str(errors[0])
    unlistable = InputError(str(src), "", "cannot list input: 403 Forbidden", "")
    plan, errors = plan_changes(sources, files, [unlistable], manifest)
    assert plan.deleted == [] and "3 file(s) from it are kept" in errors[0].message
    src.mkdir()  # the folder back, without its files: they were removed
    files, errors = discover(sources, INPUTS)
    plan, errors = plan_changes(sources, files, errors, manifest)
    assert sorted(Path(p).name for p in plan.deleted) == ["a.md", "b.md", "c.md"] and not errors


def test_second_ingest_of_a_collection_waits_for_the_first(tmp_path: Path):
    order: list[str] = []
    holding, timed_out = threading.Event(), threading.Event()

    def first() -> None:
        with collection_lock(str(tmp_path), "kb"):
            holding.set()
            timed_out.wait(30)  # held until the second has seen it held, however slow the machine
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    assert holding.wait(30)
    with pytest.raises(TimeoutError, match="stayed locked by another ingest"), \
            collection_lock(str(tmp_path), "kb", timeout_s=0.2):
        pass
    timed_out.set()
    with collection_lock(str(tmp_path), "kb"):  # queues behind the first run
        order.append("second ran")
    thread.join()
    assert order == ["first done", "second ran"]
    with collection_lock(str(tmp_path), "other", timeout_s=0):  # other collections are free
        pass


def _live_watcher(source, poke) -> queue.Queue:
    """Consume ``source`` (change sets) in a thread; return once it reports ``poke()``'s change
    to ``probe.md``: the watcher is then known to be watching, on a machine of any speed."""
    got: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [got.put(c) for c in source], daemon=True).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        poke()
        with contextlib.suppress(queue.Empty):
            if any(Path(p).name == "probe.md" for p in got.get(timeout=2).paths):
                return got
    raise AssertionError("the watcher never reported a change within 60 s")


def _change_sets(got: queue.Queue, quiet_s: float) -> list[FileChanges]:
    """The change sets reported until ``quiet_s`` passes without one after the first, with the
    probe file (a late echo of ``_live_watcher``'s pokes) left out."""
    sets: list[FileChanges] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            change = got.get(timeout=quiet_s)
        except queue.Empty:
            if sets:
                break
            continue
        real = FileChanges(*({p for p in group if Path(p).name != "probe.md"}
                             for group in (change.added, change.modified, change.deleted)))
        if real:
            sets.append(real)
    return sets


def test_local_watcher_turns_a_burst_into_one_change_set(tmp_path: Path):
    inbox, data = tmp_path / "inbox", tmp_path / "inbox" / "data"
    data.mkdir(parents=True)
    stop = threading.Event()
    accept = InputFilter(INPUTS, [str(data)])
    pokes = iter(range(1000))
    got = _live_watcher(watch_local([str(inbox)], accept, debounce_s=1.0, stop=stop),
                        lambda: (inbox / "probe.md").write_text(f"probe {next(pokes)}"))
    for n in range(20):
        (inbox / f"f{n:02d}.md").write_text(f"file {n}")
    (inbox / "image.png").write_bytes(b"\x89PNG")  # not an input
    (data / "own-output.parquet").write_bytes(b"x")  # the pipeline's own storage
    sets = _change_sets(got, quiet_s=4)
    stop.set()
    assert len(sets) == 1, sets
    assert sorted(Path(p).name for p in sets[0].added | sets[0].modified) == \
        [f"f{n:02d}.md" for n in range(20)]
    assert not sets[0].deleted


def test_polling_watcher_reports_new_changed_deleted_on_an_object_store():
    fs = fsspec.filesystem("memory")
    root = "memory://vecpress-poll"
    fs.pipe({f"{root}/a.md": b"alpha", f"{root}/b.md": b"beta"})
    stop = threading.Event()
    pokes = iter(range(1000))
    got = _live_watcher(poll_urls([root], InputFilter(INPUTS, []), poll_s=0.3, stop=stop),
                        lambda: fs.pipe({f"{root}/probe.md": f"probe {next(pokes)}".encode()}))
    fs.pipe({f"{root}/c.md": b"gamma", f"{root}/a.md": b"alpha, longer now"})
    fs.rm(f"{root}/b.md")
    sets = _change_sets(got, quiet_s=2)
    stop.set()
    assert len(sets) == 1, sets
    assert {Path(p).name for p in sets[0].added} == {"c.md"}
    assert {Path(p).name for p in sets[0].modified} == {"a.md"}
    assert {Path(p).name for p in sets[0].deleted} == {"b.md"}


def test_ledger_commits_are_batched_and_spaced_by_their_own_cost(tmp_path: Path):
    """A commit right after another waits (unless forced), and the spacing grows with what a
    commit costs, so commits stay a small share of a run; nothing pending is lost either way."""
    catalog = Catalog(str(tmp_path / "catalog"))
    ledger = Ledger(catalog, "run-1")
    row = ShardRow("b1", "g1-0", "g1", 0, "chunked", "p", "", "", 5, "")
    ledger.set(row)
    record = catalog.record_shards

    def slow_store(rows: list[ShardRow]) -> None:  # a store where a commit takes 0.1 s or more
        time.sleep(0.1)
        record(rows)

    catalog.record_shards = slow_store  # type: ignore[method-assign]
    assert ledger.commit(force=True)
    assert ledger.spacing >= 0.1 / COMMIT_SHARE > COMMIT_EVERY_S
    ledger.set(row, state="embedded")
    assert not ledger.commit()  # too soon: stays pending
    assert [r["state"] for r in catalog.shards("b1").to_pylist()] == ["chunked"]
    ledger.last_commit -= ledger.spacing  # as if the spacing had passed
    assert ledger.commit()
    assert [r["state"] for r in catalog.shards("b1").to_pylist()] == ["embedded"]
    assert not ledger.commit(force=True)  # nothing pending
