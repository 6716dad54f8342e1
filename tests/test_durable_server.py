"""On a real Milvus server: a run rides out a server stopped mid-load, and searches beside an
ingest and a rebuild never fail and never mix builds."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
import traceback

import pytest
from durable import catalog, ledger, summary_of
from milvus_process import start_milvus

from vecpress.infra import storage
from vecpress.infra.settings import Settings
from vecpress.tasks.collection.builds import live_shards
from vecpress.tasks.search.opening import open_searcher

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_ws(durable_ws: dict, milvus_server: str) -> dict:
    return dict(durable_ws, env=durable_ws["env"] | {"VECPRESS_MILVUS__URI": milvus_server},
                uri=milvus_server)


def _restart_on_the_same_port(down_s: float) -> None:
    """Stop the shared server, wait, start it again where its clients look for it.

    The package probes ports without SO_REUSEADDR, so while the killed server's sockets sit
    in TIME_WAIT (60 s) it silently moves to the next free port, and every later test of the
    session connects to a dead one. Pinning the port and probing as the server binds
    (``milvus_process.start_milvus``) avoids it.
    """
    from milvus import default_server

    port = default_server.listen_port
    default_server.stop()
    time.sleep(down_s)
    start_milvus(default_server, port)
    assert default_server.listen_port == port


def test_a_milvus_server_stopped_mid_load_is_ridden_out(server_ws: dict) -> None:
    ws = server_ws
    process = subprocess.Popen(
        [*_cli(ws, "restarted")], env=ws["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if catalog(ws, "restarted").exists() and ledger(ws, "restarted")["loaded"] >= 3:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run finished before the server could be stopped"
    _restart_on_the_same_port(2)
    _, err = process.communicate(timeout=900)
    if process.returncode != 0:  # a clear message, and the rerun repairs
        assert process.returncode == 3 and "Traceback" not in err and "error:" in err, err[-3000:]
        rerun = subprocess.run(_cli(ws, "restarted"), env=ws["env"], capture_output=True,
                               text=True, timeout=900)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
    done = subprocess.run(_cli(ws, "restarted"), env=ws["env"], capture_output=True, text=True,
                          timeout=900)
    summary = summary_of(done)
    assert summary["passages_embedded"] == 0 and summary["changes"]["unchanged"] > 0
    searcher = open_searcher(_settings(ws, "restarted"))
    try:
        assert searcher.store.count(searcher.collection) == ws["reference"]["rows_in_milvus"]
    finally:
        searcher.store.close()


def _cli(ws: dict, collection: str, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "vecpress", "ingest", str(ws["corpus"]), "--collection",
            collection, "--storage-root", str(ws["root"] / "data"), "--milvus-uri", ws["uri"],
            "--json", *extra]


def _settings(ws: dict, collection: str) -> Settings:
    return Settings(collection=collection, storage_root=str(ws["root"] / "data"),
                    milvus={"uri": ws["uri"]},
                    model={"cache_dir": ws["env"]["VECPRESS_MODEL__CACHE_DIR"],
                           "path": ws["env"]["VECPRESS_MODEL__PATH"]},
                    codec={"pca_dim": 32, "pq_m": 8})


def test_search_beside_an_ingest_and_a_rebuild_never_fails(server_ws: dict) -> None:
    # Its own copy of the corpus, which it grows (the shared one is read by the other worker).
    ws = dict(server_ws, corpus=server_ws["root"] / "corpus_live")
    shutil.copytree(server_ws["corpus"], ws["corpus"])
    first = subprocess.run(_cli(ws, "live"), env=ws["env"], capture_output=True, text=True,
                           timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    live = catalog(ws, "live")
    passages = live_shards(live, live.active().build)[0][0]
    probe = storage.read_parquet(passages, columns=["text"]).column("text")[3].as_py()
    searcher = open_searcher(_settings(ws, "live"))
    errors: list[BaseException] = []
    answers: list[tuple[str, list]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                hits = searcher.search([probe], 5)[0]
                answers.append((searcher.collection, hits))
            except BaseException as exc:  # every failure is what this test is about
                errors.append(exc)
            time.sleep(0.05)

    def answered_from(build: str) -> None:
        deadline = time.monotonic() + 120
        while not any(c == build for c, _ in answers) and not errors:
            assert time.monotonic() < deadline, f"no answer from {build} within 120 s"
            time.sleep(0.1)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        answered_from("live__v1")
        (ws["corpus"] / "extra.txt").write_text("A new file about durable ingest and rebuilds.")
        grown = subprocess.run(_cli(ws, "live"), env=ws["env"], capture_output=True, text=True,
                               timeout=900)
        assert grown.returncode == 0, grown.stderr[-3000:]
        rebuilt = subprocess.run(_cli(ws, "live", "--recreate"), env=ws["env"],
                                 capture_output=True, text=True, timeout=900)
        assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
        answered_from("live__v2")  # the searcher follows the switch
    finally:
        stop.set()
        thread.join()
        searcher.store.close()
    assert not errors, "".join(traceback.format_exception(errors[0]))
    builds = {collection for collection, _ in answers}
    assert builds == {"live__v1", "live__v2"}  # it followed the switch
    for _, hits in answers:  # every answer is whole: k hits, the probe's own passage first
        assert len(hits) == 5 and hits[0].text == probe
    assert summary_of(rebuilt)["gc"]["builds_dropped"] == ["live__v1"]
    # The dropped build's rescoring store went with it; the active one's stays.
    stores = ws["root"] / "data" / "collections" / "live" / "rescore"
    assert sorted(p.name for p in stores.iterdir()) == ["live__v2"]
