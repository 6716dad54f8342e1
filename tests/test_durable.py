"""A run that dies anywhere is finished by running it again, redoing only what was in flight.

Real processes and components throughout: the ``vecpress ingest`` CLI in its own process group,
killed with SIGKILL; a Dask worker killed by pid; a small tmpfs that fills up; Milvus Lite and the
catalog's Delta tables. A tiny random BERT (MiniLM's tokenizer) keeps embedding cheap so that the
other stages and the bookkeeping are what is exercised.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from durable import (
    args,
    assert_complete,
    catalog,
    ingest,
    interrupt_when,
    kill_group_when,
    ledger,
    rows,
    summary_of,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("collection", "share"), [("killed_early", 0.25), ("killed_late", 0.7)])
def test_sigkill_of_the_process_group_then_rerun_redoes_only_in_flight_shards(
        durable_ws: dict, collection: str, share: float) -> None:
    ws = durable_ws
    at_kill = kill_group_when(ws, collection, share)
    committed = catalog(ws, collection).read("shards").to_pylist()
    kept = sum(r["rows"] for r in committed if r["state"] in ("encoded", "loaded")) + sum(
        r["rows"] for r in committed if r["state"] == "embedded" and Path(r["embeddings_url"])
        .exists())
    assert at_kill["loaded"] >= share * ws["reference"]["shards"]

    rerun = ingest(ws, collection)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = summary_of(rerun)
    total = ws["reference"]["passages"]
    # Only what was not committed is embedded again; committed shards are skipped or resumed.
    assert summary["passages_embedded"] == total - kept
    assert summary["passages_embedded"] < total * (1 - share) + 200
    assert summary["shards_skipped"] + summary["changes"]["unchanged"] > 0
    assert summary["codec"]["codec_id"] == ws["reference"]["codec"]["codec_id"]  # same sample
    assert_complete(ws, collection)


def test_ctrl_c_exits_130_in_one_line_and_the_same_command_resumes(durable_ws: dict) -> None:
    """A terminal's Ctrl-C (SIGINT to the command and its workers) mid-stream: exit 130 and one
    line saying that the committed shards are kept and the same command resumes (it printed
    Prefect's crash line twice, Dask's warnings and exit 130 that no help text named); the same
    command then completes the collection. Started from a background job (CI: SIGINT ignored, as
    `cmd &` leaves it) the command still stops: it ignored the signal and ran to the end."""
    ws = durable_ws
    stopped = interrupt_when(ws, "interrupted", 0.3)
    assert stopped.returncode == 130, stopped.stderr[-3000:]
    assert "Traceback" not in stopped.stderr and "Crash detected" not in stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and "run the same command again" in last, last
    # A search meanwhile says that the first ingest did not finish ("no collection" before).
    search = subprocess.run([*args(ws, "interrupted")[:3], "search", "anything",
                             *args(ws, "interrupted")[5:11]], env=ws["env"], capture_output=True,
                            text=True, timeout=120)
    assert search.returncode == 2, search.stderr
    said = " ".join(search.stderr.split())
    assert "collection 'interrupted' has no finished build yet: its first ingest (run " in said
    assert "run the same vecpress ingest again to finish it" in said
    rerun = ingest(ws, "interrupted")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = summary_of(rerun)
    assert summary["shards_skipped"] + summary["changes"]["unchanged"] > 0  # not started over
    assert summary["passages_embedded"] < ws["reference"]["passages"]
    assert_complete(ws, "interrupted")


def test_a_killed_dask_worker_does_not_fail_the_run(durable_ws: dict) -> None:
    from distributed import Client, LocalCluster

    ws = durable_ws
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        process = subprocess.Popen(args(ws, "worker_killed", "--dask-address",
                                        cluster.scheduler_address), env=ws["env"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and process.poll() is None:
            if catalog(ws, "worker_killed").exists() and \
                    ledger(ws, "worker_killed")["loaded"] >= 0.2 * ws["reference"]["shards"]:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run finished before a worker could be killed"
        pid = next(iter(client.run(os.getpid).values()))
        os.kill(pid, signal.SIGKILL)  # its nanny restarts it; its tasks run elsewhere
        _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    assert rows(ws, "worker_killed") == ws["reference"]["rows_in_milvus"]


def test_a_full_disk_fails_clearly_keeps_the_catalog_and_the_rerun_finishes(durable_ws: dict,
                                                                            tmp_path) -> None:
    ws = dict(durable_ws)
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        ws["storage_root"] = mount / "data"
        full = ingest(ws, "full_disk")
        assert full.returncode == 3, full.stderr[-3000:]
        message = " ".join(full.stderr.split())
        assert "no space left under the storage root" in message and str(mount) in message
        assert "Traceback" not in full.stderr
        before = catalog(ws, "full_disk")
        for table in ("builds", "files", "shards"):
            before.read(table)  # every committed version is readable
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        rerun = ingest(ws, "full_disk")
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert_complete(ws, "full_disk")
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_gc_removes_what_a_failed_run_left(durable_ws: dict) -> None:
    ws = dict(durable_ws)
    ws["corpus"] = ws["root"] / "corpus_gc"
    ws["corpus"].mkdir()
    for path in sorted(durable_ws["corpus"].iterdir())[:40]:
        (ws["corpus"] / path.name).write_text(path.read_text())
    ws["reference"] = dict(durable_ws["reference"], shards=durable_ws["reference"]["shards"] / 3)
    kill_group_when(ws, "gc", 0.3)
    for path in sorted(ws["corpus"].iterdir())[20:]:  # the killed run's later groups are orphans
        path.write_text(path.read_text() + "\n\nAn added closing paragraph about garbage.")
    rerun = ingest(ws, "gc")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    cat = catalog(ws, "gc")
    build = cat.active().build
    referenced = set(cat.files(build).column("group_id").to_pylist())
    on_disk = {p.name for p in (Path(cat.root).parent / "shards").iterdir()}
    assert on_disk == referenced
    assert set(cat.read("shards").column("group_id").to_pylist()) == referenced
    assert not list((Path(cat.root).parent / "shards").glob("*/embeddings-*"))
    assert not list((Path(cat.root).parent / "shards").glob("*/tokens-*"))
    assert summary_of(rerun)["gc"]["groups_removed"] >= 1
    assert rows(ws, "gc") == sum(cat.files(build).column("passages").to_pylist())
