"""Two ingests of one collection on Milvus Lite take turns: the second queues on the collection's
lock for as long as the first runs, as on a server, instead of timing out on the Lite file."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import milvus_rows

from vecpress.infra import lite_engine
from vecpress.infra.locks import lock_path

pytestmark = pytest.mark.slow


def test_an_ingest_of_a_collection_another_ingest_runs_queues_for_it(
        tmp_path: Path, model_cache: Path, tiny_model: str, dask_address: str,
        prefect_harness) -> None:
    """This process plays the first ingest: it holds the collection's lock and its Lite file.
    The second ingest says it waits for the other ingest and keeps waiting past
    ``milvus.retry_s`` (it exited 3 after it, blaming `vecpress api`); once both are free it
    loads, with every row."""
    from prefect.settings import PREFECT_API_URL

    src, data, uri = tmp_path / "src", tmp_path / "data", str(tmp_path / "turns.db")
    src.mkdir()
    (src / "a.txt").write_text("How the nightly job rotates its logs and keeps a week of them.\n")
    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200",
                        "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
                        "VECPRESS_MODEL__PATH": tiny_model, "VECPRESS_DASK__ADDRESS": dask_address,
                        "VECPRESS_MILVUS__RETRY_S": "2"}
    command = [sys.executable, "-m", "vecpress", "ingest", str(src), "--collection", "turns",
               "--storage-root", str(data), "--milvus-uri", uri]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    (src / "b.txt").write_text("Where the backups of the database are kept, and for how long.\n")

    lock = FileLock(str(lock_path(str(data), "turns")))
    lock.acquire()
    lite_engine.open_engine(uri)
    log = tmp_path / "second.log"
    with log.open("w") as out:
        second = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out,
                                  text=True)
    try:
        deadline = time.monotonic() + 120
        while "waiting for it" not in log.read_text() and second.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(4)  # twice milvus.retry_s: still queued, not given up
        assert second.poll() is None, log.read_text()[-3000:]
        assert "another ingest of collection 'turns' is running" in log.read_text()
    finally:
        lite_engine.release(uri)
        lock.release()
    assert second.wait(timeout=300) == 0, log.read_text()[-3000:]
    assert milvus_rows(str(data), "turns", uri) == 2
