"""The cross-host collection lease on a real S3 API (moto's server): one holder, waiting runs
served in arrival order, and a holder that died is taken over (at once on its own host, after
``lease_ttl_s`` from another)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from s3 import make_bucket, moto_server, s3fs_of, storage_options

from vecpress.infra import storage
from vecpress.infra.lease import LeaseTimeoutError, StoreLease
from vecpress.infra.locks import collection_lock

pytestmark = pytest.mark.slow  # a real S3 API server (moto)
log = logging.getLogger("test")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        make_bucket(server, "leases")
        storage.configure("s3://leases", storage_options(server))
        yield server


def test_waiting_runs_get_the_collection_in_arrival_order(s3: dict) -> None:
    root = "s3://leases/collections/order"
    order: list[str] = []
    holder = StoreLease(root, ttl_s=30)
    holder.acquire(-1, log)

    def run(name: str) -> None:
        lease = StoreLease(root, ttl_s=30)
        lease.acquire(-1, log)
        order.append(name)
        time.sleep(0.3)
        lease.release()

    fs = s3fs_of(s3)
    queue = "leases/collections/order/lease/queue"
    threads = []
    for n, name in enumerate(("first", "second", "third")):
        threads.append(threading.Thread(target=run, args=(name,)))
        threads[-1].start()
        deadline = time.monotonic() + 60  # its ticket is in the queue, however slow the machine
        while len(fs.ls(queue, refresh=True)) < n + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(fs.ls(queue, refresh=True)) == n + 2, f"{name} queued no ticket"
        time.sleep(1.1)  # S3 orders by LastModified, which has one-second resolution
    assert order == []  # all wait while the holder holds
    holder.release()
    for thread in threads:
        thread.join(60)
    assert order == ["first", "second", "third"]
    fs.invalidate_cache()
    assert fs.find("leases/collections/order/lease") == []  # nothing is left behind


def test_the_lock_of_an_object_store_root_is_the_lease_and_times_out_clearly(s3: dict) -> None:
    with collection_lock("s3://leases", "busy", lease_ttl_s=30):
        with pytest.raises(LeaseTimeoutError, match="stayed locked by another ingest"), \
                collection_lock("s3://leases", "busy", timeout_s=3, lease_ttl_s=30):
            pass
        with collection_lock("s3://leases", "other", timeout_s=0, lease_ttl_s=30):
            pass  # other collections are free
    with collection_lock("s3://leases", "busy", timeout_s=5, lease_ttl_s=30):
        pass  # released


def test_a_killed_holder_on_this_host_is_taken_over_at_once(s3: dict, tmp_path) -> None:
    script = ("import logging, sys, time\n"
              "from vecpress.infra import storage\n"
              "from vecpress.infra.lease import StoreLease\n"
              f"storage.configure('s3://leases', {storage_options(s3)!r})\n"
              "StoreLease('s3://leases/collections/killed', 600).acquire(-1, logging.getLogger())\n"
              "print('held', flush=True)\ntime.sleep(600)\n")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert process.stdout.readline().strip() == "held"
        waiter = StoreLease("s3://leases/collections/killed", ttl_s=600)
        with pytest.raises(LeaseTimeoutError):
            waiter.acquire(3, log)  # alive: it holds
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(30)
        lease = StoreLease("s3://leases/collections/killed", ttl_s=600)
        # Its process is gone: taken over at once, not after the 600 s expiry (a timeout fails).
        lease.acquire(120, log)
        lease.release()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_a_holder_lost_on_another_host_expires_after_the_ttl(s3: dict) -> None:
    fs = s3fs_of(s3)
    base = "leases/collections/lost/lease"
    fs.pipe(f"{base}/queue/gone", b"{}")
    fs.pipe(f"{base}/alive/gone", b"")
    fs.pipe(f"{base}/holder.json", json.dumps({"ticket": "gone", "host": "another-host",
                                                "pid": 1}).encode())
    started = time.monotonic()
    lease = StoreLease("s3://leases/collections/lost", ttl_s=4)
    lease.acquire(120, log)  # taken over (a timeout fails the test) ...
    assert time.monotonic() - started >= 3  # ... but not before the lost holder's lease ran out
    assert json.loads(fs.cat(f"{base}/holder.json"))["ticket"] == lease.ticket
    lease.release()
    assert not fs.exists(f"{base}/queue/gone")


def test_a_missing_bucket_is_said_plainly_and_never_created(s3: dict) -> None:
    from vecpress.infra.storage import StorageRootError, check_root

    check_root("s3://leases/some/prefix")  # exists: fine, even where no object is yet
    with pytest.raises(StorageRootError, match=r"bucket 'lease-typo' .* does not exist"):
        check_root("s3://lease-typo/vecpress")
    storage.makedirs("s3://lease-typo/vecpress/collections")
    assert not s3fs_of(s3).exists("lease-typo")  # s3fs would have created the bucket
