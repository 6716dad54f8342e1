"""Milvus Lite after a kill mid-flush: the write-ahead logs a committed flush already persisted are
removed before the engine opens, so that it does not load their rows a second time.

Lite's flush writes its memtable into a segment, commits the collection's manifest (the new
segment, and ``active_wal_number``: the log that takes writes from then on), and only then
deletes the frozen log. A process killed between those last two steps leaves a log whose rows are
also in a committed segment. Lite's recovery replays every log it finds, and its dedup keeps every
row that has its key's highest sequence number, so each such row is counted and found twice; a
resumed ingest skips the shards already loaded, so the copies stayed (``tests/test_durable.py``'s
GC test failed so in one CI run, 14 local reruns passing: 2,063 rows where its 1,269 passages
were, the 794 extra exactly the passages the killed run had loaded and the rerun skipped).

A log numbered below ``active_wal_number`` holds only rows that a committed flush persisted: a
flush freezes the log, writes the segment, then commits the higher number; recovery starts a log
numbered above every log it found. So removing it loses nothing. This reads Lite's files, not
its interface: it is done only where the layout is the one described (a manifest with an integer
``active_wal_number`` beside a ``wal`` folder, Lite's own log helpers), and under Lite's own lock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def drop_persisted_logs(data_dir: str) -> int:
    """Remove, in every collection of the Lite file ``data_dir``, the write-ahead logs that a
    committed flush persisted; return how many log numbers were removed. Does nothing where
    another process holds the file (opening it then fails anyway) or where Lite's layout differs."""
    try:
        from milvus_lite.storage.wal import WAL, _cleanup_old_wals
    except ImportError:
        return 0
    root = Path(data_dir)
    if not root.is_dir():
        return 0
    removed = 0
    with holding_lock(root / "LOCK") as held:
        if not held:
            return 0
        for manifest in [*root.glob("collections/*/manifest.json"),
                         *root.glob("databases/*/collections/*/manifest.json")]:
            wal_dir = manifest.parent / "wal"
            active = _active_log(manifest)
            if active is None or not wal_dir.is_dir():
                continue
            persisted = [n for n in WAL.find_wal_files(str(wal_dir)) if n < active]
            if persisted:
                _cleanup_old_wals(str(wal_dir), max(persisted))
                removed += len(persisted)
                log.warning("Milvus Lite collection %s: removed write-ahead log(s) %s, already "
                            "in its segments (a process was killed while flushing)",
                            manifest.parent.name, persisted)
    return removed


def _active_log(manifest: Path) -> int | None:
    """The manifest's ``active_wal_number``, or None where it has none (never flushed) or is
    not the manifest this module knows."""
    try:
        number = json.loads(manifest.read_text()).get("active_wal_number")
    except (OSError, ValueError, AttributeError):
        return None
    return number if isinstance(number, int) else None


@contextlib.contextmanager
def holding_lock(lock_path: Path) -> Iterator[bool | None]:
    """Lite's lock on its file (an exclusive ``flock`` of ``LOCK``), held for the block: True,
    False where another process holds it, None without ``flock`` (Windows: not asked)
    (``cli.lite_busy`` asks this too)."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
