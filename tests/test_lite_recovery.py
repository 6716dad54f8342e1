"""A process killed while Milvus Lite flushes: after its manifest committed the new segment but
before it deleted the frozen write-ahead log. Lite alone then loads those rows twice (each is
counted and found twice); opened through vecpress (``infra/lite_recovery.py``), every row is
there once, and nothing written before the kill is lost."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import MilvusSettings

FLUSHED, AFTER = 300, 120  # rows in the killed flush; rows written after the reopening

# The child writes FLUSHED rows and flushes them; the flush is killed at the point under test:
# Lite's ``close_and_delete`` of the frozen log, which it calls right after the manifest commit.
# Run in its own process, so that the kill is a real one (no close, no exit handlers).
CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np, pyarrow as pa
    from milvus_lite.storage.wal import WAL
    from vecpress.infra.milvus import MilvusStore
    from vecpress.infra.settings import MilvusSettings

    def rows(first, n):
        pk = np.arange(first, first + n)
        vectors = np.random.default_rng(first).standard_normal((n, 8)).astype(np.float32)
        return pa.table({"pk": pk, "doc_id": [f"d{i}" for i in pk],
                         "chunk": pa.array(np.zeros(n), pa.int32()), "text": ["t"] * n,
                         "source": ["s"] * n, "codec_id": ["c"] * n, "metadata": ["{}"] * n,
                         "vector": [v.tolist() for v in vectors]})

    store = MilvusStore(MilvusSettings(uri=sys.argv[1]))
    store.ensure_collection("c", 8, "c")
    store.upsert_table("c", rows(0, FLUSHED))
    WAL.close_and_delete = lambda self: os.kill(os.getpid(), signal.SIGKILL)
    store.flush("c")
""").replace("FLUSHED", str(FLUSHED))


def _killed_mid_flush(db: Path) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, str(db)], capture_output=True,
                           text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    collection = db / "collections" / "c"
    active = json.loads((collection / "manifest.json").read_text())["active_wal_number"]
    logs = sorted(p.name for p in (collection / "wal").iterdir())
    # The state under test: the flush committed (a segment, the next log active), and the log
    # it froze is still there.
    assert list((collection / "partitions").glob("*/data/*.parquet")), logs
    assert any(int(name.split("_")[-1].split(".")[0]) < active for name in logs), (active, logs)


def test_rows_of_a_flush_killed_before_it_deleted_its_log_are_there_once(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    _killed_mid_flush(db)
    raw = tmp_path / "raw.db"
    shutil.copytree(db, raw)
    from milvus_lite.db import MilvusLite

    lite = MilvusLite(str(raw))  # Lite on its own, on a copy: it replays the persisted log
    try:
        replayed = lite.get_collection("c").num_entities
    finally:
        lite.close()

    store = MilvusStore(MilvusSettings(uri=str(db)))
    try:
        assert store.count("c") == FLUSHED, f"Lite alone counts {replayed}"
        pks = store.pks_where("c", "pk >= 0", 16_384)
        assert pks.tolist() == list(range(FLUSHED))
        query = np.random.default_rng(0).standard_normal((1, 8)).astype(np.float32)
        found = [pk for pk, _ in store.search("c", query, limit=50)[0]]
        assert len(found) == 50 and len(set(found)) == 50, found
        # Writes go on: new rows and an upsert of old ones, then a clean close and reopen.
        store.upsert("c", [{"pk": FLUSHED + i, "doc_id": "n", "chunk": 0, "text": "t",
                            "source": "s", "codec_id": "c", "metadata": {},
                            "vector": [0.5] * 8} for i in range(AFTER)])
        store.flush("c")
    finally:
        store.close()
    reopened = MilvusStore(MilvusSettings(uri=str(db)))
    try:
        assert reopened.count("c") == FLUSHED + AFTER
    finally:
        reopened.close()
    assert replayed == 2 * FLUSHED  # what this module mends: Lite alone loads the rows twice
