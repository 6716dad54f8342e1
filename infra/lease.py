"""One ingest per collection across hosts: a lease on the object store, queued in arrival order.

Why a lease on the store and not a Prefect global concurrency limit: the store is the one thing
every run of a collection shares, however it was started (a CLI run with its own temporary Prefect
API, a deployment run, the Python API, on any host), and a lease there needs no other service.

How it holds (``<collection>/lease/`` on the storage root):

- Each run that wants the collection writes a ticket ``queue/<uuid>@<pid>@<host>`` once; its store time
  (LastModified) is its place in the queue, the uuid breaks ties. While it lives it rewrites
  ``alive/<uuid>`` every few seconds.
- The oldest live ticket creates ``holder.json`` with put-if-absent (S3 ``If-None-Match``), the
  atomic step: two runs that both believe they are first cannot both create it. The holder
  rewrites it while it runs and deletes it (and its ticket) when done.
- A holder or ticket not rewritten for ``lease_ttl_s`` is dead (a killed run, a lost host): the
  oldest waiter takes the lease over. Ages are differences of the store's own timestamps, so the
  hosts' clocks do not matter. A holder on this host whose process is gone is dead at once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from fsspec.core import url_to_fs

from vecpress.infra import storage
from vecpress.infra.log_marks import HEADLINE

POLL_S = 2.0
log = logging.getLogger("vecpress")


class LeaseTimeoutError(TimeoutError):
    """Another ingest held the collection for longer than the caller would wait."""


class StoreLease:
    """The lease of one collection on an fsspec store that supports put-if-absent (S3)."""

    def __init__(self, collection_root: str, ttl_s: float) -> None:
        self.fs, root = url_to_fs(collection_root)
        self.root = root.rstrip("/") + "/lease"
        self.ttl_s = ttl_s
        host, pid = _host(), os.getpid()
        self.ticket = f"{uuid.uuid4().hex}@{pid}@{host}"  # whose it is, readable from a listing
        self.me = {"ticket": self.ticket, "host": host, "pid": pid}
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self.holding = False

    # --- the queue -------------------------------------------------------------------------------

    def _stamp(self, path: str) -> float:
        return self.fs.info(path)["LastModified"].timestamp()

    def _touch(self) -> float:
        """Rewrite this run's liveness mark; the store's time now."""
        path = f"{self.root}/alive/{self.ticket}"
        self.fs.pipe_file(path, b"")
        return self._stamp(path)

    def _queue(self, now: float) -> list[str]:
        """Live tickets, oldest first; dead ones (no liveness mark for ``ttl_s``) are removed."""
        self.fs.invalidate_cache(self.root)
        alive = {e["name"].rsplit("/", 1)[-1]: e["LastModified"].timestamp()
                 for e in self._ls("alive")}
        order = []
        for entry in self._ls("queue"):
            name = entry["name"].rsplit("/", 1)[-1]
            stamp = entry["LastModified"].timestamp()  # a newcomer's mark may not be listed yet
            if name != self.ticket and (now - max(alive.get(name, 0.0), stamp) > self.ttl_s
                                        or self._dead_here(_owner(name))):
                self._remove(f"{self.root}/queue/{name}", f"{self.root}/alive/{name}")
                continue
            order.append((entry["LastModified"].timestamp(), name))
        return [name for _, name in sorted(order)]

    def _ls(self, folder: str) -> list[dict]:
        try:
            return self.fs.ls(f"{self.root}/{folder}", detail=True, refresh=True)
        except FileNotFoundError:  # an empty prefix, on an object store
            return []

    def _remove(self, *paths: str) -> None:
        for path in paths:
            with suppress(FileNotFoundError):
                self.fs.rm_file(path)

    # --- the holder ------------------------------------------------------------------------------

    def _try_hold(self, now: float) -> dict | None:
        """Create the holder mark if it is free or dead; the live holder otherwise."""
        path = f"{self.root}/holder.json"
        try:
            with self.fs.open(path, "xb") as fh:  # put-if-absent: the atomic step
                fh.write(json.dumps(self.me).encode())
            return None
        except FileExistsError:
            pass
        except OSError as exc:  # a conditional write that lost a race (409 / 412 not mapped)
            if not any(code in str(exc) for code in ("409", "412", "Precondition", "Conflict")):
                raise
        try:
            holder = json.loads(self.fs.cat_file(path))
            age = now - self._stamp(path)
        except FileNotFoundError:
            return {}  # released between the two calls: try again at the next poll
        if age > self.ttl_s or self._dead_here(holder):
            self._remove(path, f"{self.root}/queue/{holder.get('ticket')}",
                         f"{self.root}/alive/{holder.get('ticket')}")
            return {}
        return holder

    @staticmethod
    def _dead_here(holder: dict) -> bool:
        if holder.get("host") != _host() or not holder.get("pid"):
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _ours(self) -> bool:
        try:
            return json.loads(self.fs.cat_file(f"{self.root}/holder.json")).get("ticket") == \
                self.ticket
        except FileNotFoundError:
            return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(max(0.5, self.ttl_s / 4)):
            try:
                self._touch()
                if self.holding and self._ours():
                    self.fs.pipe_file(f"{self.root}/holder.json", json.dumps(self.me).encode())
                elif self.holding:
                    log.error("the collection lease at %s was taken over (this run was not heard "
                              "from for %.0fs): another ingest may now run beside this one",
                              self.root, self.ttl_s)
                    self.holding = False  # said once; its holder mark is not this run's to remove
            except Exception as exc:  # the next beat tries again
                log.warning("could not renew the collection lease at %s (%s); a lease not "
                            "renewed for %.0fs is taken over", self.root, exc, self.ttl_s)

    # --- public ----------------------------------------------------------------------------------

    def acquire(self, timeout_s: float, logger: logging.Logger | logging.LoggerAdapter) -> None:
        try:
            self._acquire(timeout_s, logger)
        except BaseException:
            self.release()
            raise

    def _acquire(self, timeout_s: float, logger: logging.Logger | logging.LoggerAdapter) -> None:
        self._touch()  # alive before it queues: never listed as a ticket without a mark
        self.fs.pipe_file(f"{self.root}/queue/{self.ticket}", json.dumps(self.me).encode())
        self._beat = threading.Thread(target=self._heartbeat, name="vecpress-lease", daemon=True)
        self._beat.start()
        started, told = time.monotonic(), False
        while True:
            now = self._touch()
            queue = self._queue(now)
            if self.ticket not in queue:  # removed as dead (a stall longer than the ttl): rejoin
                self.fs.pipe_file(f"{self.root}/queue/{self.ticket}", json.dumps(self.me).encode())
                continue
            holder = self._try_hold(now) if queue and queue[0] == self.ticket else {"ahead": 1}
            if holder is None:
                self.holding = True
                return
            if not told and holder:
                logger.info("another ingest of this collection is running (%s); waiting for it: "
                            "%d run(s) ahead in the queue (%s)", holder.get("host", "?"),
                            max(1, queue.index(self.ticket) if self.ticket in queue else 1),
                            self.root, extra=HEADLINE)
                told = True
            if 0 <= timeout_s < time.monotonic() - started:
                raise LeaseTimeoutError(f"the collection stayed locked by another ingest for "
                                        f"{timeout_s:.0f}s ({self.root}); try again later")
            time.sleep(POLL_S)

    def release(self) -> None:
        """Give the lease up; a store that cannot be reached now leaves marks that expire."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        try:
            if self.holding and self._ours():
                self._remove(f"{self.root}/holder.json")
            self._remove(f"{self.root}/queue/{self.ticket}", f"{self.root}/alive/{self.ticket}")
        except Exception as exc:  # never hide the run's own outcome
            log.warning("could not release the collection lease at %s (%s); it expires after "
                        "%.0fs", self.root, exc, self.ttl_s)
        finally:
            self.holding = False


def _host() -> str:
    """This host as the lease names it: the hostname and the PID namespace, so that containers
    sharing a hostname (host networking) never judge each other's processes."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return f"{socket.gethostname()}.ns{namespace}"


def _owner(ticket: str) -> dict:
    _, pid, host = [*ticket.split("@", 2), "", ""][:3]
    return {"host": host, "pid": int(pid) if pid.isdigit() else 0}


@contextmanager
def store_lease(collection_root: str, ttl_s: float, timeout_s: float,
                logger: logging.Logger | logging.LoggerAdapter) -> Iterator[None]:
    """Hold the collection's lease on the store; wait in the queue while another run holds it."""
    storage.makedirs(collection_root)
    lease = StoreLease(collection_root, ttl_s)
    lease.acquire(timeout_s, logger)
    try:
        yield
    finally:
        lease.release()
