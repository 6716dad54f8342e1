"""One ingest per collection at a time: later runs wait for the lock (they queue), none is dropped.

The lock is a file lock beside the collection's artifacts when the storage root is a local path,
so CLI runs, deployment runs and event-triggered runs on one machine (or on hosts sharing that
file system) take turns. For an object-store root it is a lease on the store (``infra.lease``),
which holds across hosts and queues the waiting runs in arrival order.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout
from fsspec.core import url_to_fs

from vecpress.infra import storage
from vecpress.infra.lease import store_lease
from vecpress.infra.log_marks import HEADLINE

log = logging.getLogger("vecpress")


def lock_path(storage_root: str, collection: str) -> Path:
    _, root = url_to_fs(storage_root)
    return Path(root) / "collections" / f"{collection}.ingest.lock"


def held_elsewhere(storage_root: str, collection: str) -> bool:
    """True when another run holds the collection's ingest lock on this machine's file system
    (False for an object-store root, whose lease queues the run itself)."""
    if storage.is_remote(storage_root):
        return False
    path = lock_path(storage_root, collection)
    if not path.exists():
        return False
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextmanager
def collection_lock(storage_root: str, collection: str, timeout_s: float = -1,
                    logger: logging.Logger | logging.LoggerAdapter = log,
                    lease_ttl_s: float = 60.0) -> Iterator[None]:
    """Hold the collection's ingest lock; wait (forever by default) while another run holds it."""
    if storage.is_remote(storage_root):
        with store_lease(storage.CollectionPaths(storage_root, collection).root, lease_ttl_s,
                         timeout_s, logger):
            yield
        return
    path = lock_path(storage_root, collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        logger.info("another ingest of collection '%s' is running; waiting for it (%s)",
                    collection, path, extra=HEADLINE)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout as exc:
            raise TimeoutError(f"collection '{collection}' stayed locked by another ingest for "
                               f"{timeout_s:.0f}s ({path}); try again later") from exc
    try:
        yield
    finally:
        lock.release()
