"""Incremental building blocks on real files: the change plan, the collection lock, the watchers."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

import fsspec
import pytest

from vecpress.deployments.watcher import FileChanges, InputFilter, poll_urls, watch_local
from vecpress.infra.locks import collection_lock
from vecpress.infra.settings import InputSettings
from vecpress.tasks.collection.catalog import Catalog
from vecpress.tasks.collection.manifest import FileEntry, Manifest, content_hash, plan_changes
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


def test_second_ingest_of_a_collection_waits_for_the_first(tmp_path: Path):
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with collection_lock(str(tmp_path), "kb"):
            holding.set()
            time.sleep(1.0)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait(5)
    with pytest.raises(TimeoutError, match="stayed locked by another ingest"), \
            collection_lock(str(tmp_path), "kb", timeout_s=0.2):
        pass
    with collection_lock(str(tmp_path), "kb"):  # queues behind the first run
        order.append("second ran")
    thread.join()
    assert order == ["first done", "second ran"]
    with collection_lock(str(tmp_path), "other", timeout_s=0):  # other collections are free
        pass


def test_local_watcher_turns_a_burst_into_one_change_set(tmp_path: Path):
    inbox, data = tmp_path / "inbox", tmp_path / "inbox" / "data"
    data.mkdir(parents=True)
    stop = threading.Event()
    accept = InputFilter(INPUTS, [str(data)])
    got: list[FileChanges] = []
    thread = threading.Thread(target=lambda: got.extend(
        watch_local([str(inbox)], accept, debounce_s=1.0, stop=stop)))
    thread.start()
    time.sleep(1.0)
    for n in range(20):
        (inbox / f"f{n:02d}.md").write_text(f"file {n}")
    (inbox / "image.png").write_bytes(b"\x89PNG")  # not an input
    (data / "own-output.parquet").write_bytes(b"x")  # the pipeline's own storage
    deadline = time.monotonic() + 15
    while not got and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    thread.join(10)
    assert len(got) == 1
    assert sorted(Path(p).name for p in got[0].added | got[0].modified) == \
        [f"f{n:02d}.md" for n in range(20)]
    assert not got[0].deleted


def test_polling_watcher_reports_new_changed_deleted_on_an_object_store():
    fs = fsspec.filesystem("memory")
    root = "memory://vecpress-poll"
    fs.pipe({f"{root}/a.md": b"alpha", f"{root}/b.md": b"beta"})
    stop = threading.Event()
    got: list[FileChanges] = []
    thread = threading.Thread(target=lambda: got.extend(
        poll_urls([root], InputFilter(INPUTS, []), poll_s=0.3, stop=stop)))
    thread.start()
    time.sleep(0.5)
    fs.pipe({f"{root}/c.md": b"gamma", f"{root}/a.md": b"alpha, longer now"})
    fs.rm(f"{root}/b.md")
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(5)
    assert got, "no change reported"
    change = got[0]
    assert {Path(p).name for p in change.added} == {"c.md"}
    assert {Path(p).name for p in change.modified} == {"a.md"}
    assert {Path(p).name for p in change.deleted} == {"b.md"}
