"""Shared by the durability tests: a corpus and environment for a tiny model, the CLI run in its
own process group, kills, and reads of the collection's catalog beside a running ingest."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
from helpers import milvus_rows

from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.catalog import Catalog
from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs

FILES = 60


def durable_workspace(root: Path, shared: Path, model_cache: Path, tiny_model: str, api_url: str,
                      dask_address: str) -> dict:
    """60 text files of real paragraphs, and the environment of a tiny-model ingest on the
    session's Dask cluster (a run that is killed starts its own: ``kill_group_when``).

    The corpus and the reference ingest's summary are made once per pytest run in ``shared``
    (both xdist workers read them); each worker's tests write their collections under ``root``.
    """
    from filelock import FileLock

    corpus = shared / "corpus"
    env = os.environ | {
        "PREFECT_API_URL": api_url, "COLUMNS": "200",
        "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
        "VECPRESS_MODEL__PATH": tiny_model,
        "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
        "VECPRESS_CODEC__SAMPLE_SIZE": "600", "VECPRESS_CHUNK__MAX_TOKENS": "48",
        "VECPRESS_CHUNK__OVERLAP_TOKENS": "8", "VECPRESS_INPUTS__FILES_PER_SHARD": "2",
        "VECPRESS_MODEL__PASSAGES_PER_SHARD": "64", "VECPRESS_GC_GRACE_S": "0",
        "VECPRESS_DASK__N_WORKERS": "2", "VECPRESS_DASK__THREADS_PER_WORKER": "1",
        "VECPRESS_DASK__ADDRESS": dask_address}
    with FileLock(shared / "durable.lock"):
        if not (shared / "reference.json").exists():
            corpus.mkdir(exist_ok=True)
            paragraphs = [t for _, t in itertools.islice(stdlib_docstring_paragraphs(), 3000)]
            for i in range(FILES):
                (corpus / f"doc{i:03d}.txt").write_text(
                    "\n\n".join(paragraphs[i * 25:(i + 1) * 25]))
            reference = ingest({"root": shared, "corpus": corpus, "env": env}, "reference")
            assert reference.returncode == 0, reference.stderr[-3000:]
            (shared / "reference.json").write_text(json.dumps(summary_of(reference)))
    return {"root": root, "corpus": corpus, "env": env,
            "reference": json.loads((shared / "reference.json").read_text())}


def args(ws: dict, collection: str, *extra: str) -> list[str]:
    root = ws.get("storage_root", ws["root"] / "data")
    return [sys.executable, "-m", "vecpress", "ingest", str(ws["corpus"]), "--collection",
            collection, "--storage-root", str(root), "--milvus-uri",
            str(ws["root"] / f"{collection}.db"), "--json", *extra]


def ingest(ws: dict, collection: str, *extra: str, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    return subprocess.run(args(ws, collection, *extra), env=env or ws["env"], capture_output=True,
                          text=True, timeout=900)


def summary_of(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout[result.stdout.index("{\n"):])


def catalog(ws: dict, collection: str) -> Catalog:
    return Catalog(CollectionPaths(str(ws.get("storage_root", ws["root"] / "data")),
                                   collection).root)


def ledger(ws: dict, collection: str) -> dict[str, int]:
    """Shards per committed state (read beside the writer: Delta readers see whole commits)."""
    states = catalog(ws, collection).read("shards").column("state").to_pylist()
    return {s: states.count(s) for s in ("chunked", "embedded", "encoded", "loaded")}


def rows(ws: dict, collection: str) -> int:
    return milvus_rows(str(ws.get("storage_root", ws["root"] / "data")), collection,
                       str(ws["root"] / f"{collection}.db"))


def kill_group_when(ws: dict, collection: str, loaded_share: float) -> dict[str, int]:
    """Start an ingest in its own process group; SIGKILL the whole group once this share of the
    reference run's shards is loaded; return the ledger as committed at the kill. The run starts
    its own local cluster, so that its workers are in the group the kill takes down."""
    own_cluster = {k: v for k, v in ws["env"].items() if k != "VECPRESS_DASK__ADDRESS"}
    process = subprocess.Popen(args(ws, collection), env=own_cluster, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pgid = os.getpgid(process.pid)
    try:
        _stop_at(ws, collection, process, loaded_share)
        os.killpg(pgid, signal.SIGKILL)
        process.wait(timeout=30)
        _assert_group_gone(pgid)
    finally:
        if process.poll() is None:  # a failed check above: nothing of the group is left stopped
            os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=30)
    return ledger(ws, collection)


def interrupt_when(ws: dict, collection: str, loaded_share: float
                   ) -> subprocess.CompletedProcess:
    """As ``kill_group_when``, with a terminal's Ctrl-C instead: SIGINT to the whole group (the
    command and its cluster's workers); the command's exit status and output once it ended."""
    own_cluster = {k: v for k, v in ws["env"].items() if k != "VECPRESS_DASK__ADDRESS"}
    command = args(ws, collection)
    process = subprocess.Popen(command, env=own_cluster, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pgid = os.getpgid(process.pid)
    try:
        _stop_at(ws, collection, process, loaded_share)
        os.killpg(pgid, signal.SIGINT)
        os.killpg(pgid, signal.SIGCONT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(pgid, signal.SIGKILL)
            process.wait(timeout=30)
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _stop_at(ws: dict, collection: str, process: subprocess.Popen, loaded_share: float) -> None:
    """Return with ``process``'s group stopped (SIGSTOP) once ``loaded_share`` of the reference
    run's shards are loaded, still streaming."""
    target = ws["reference"]["shards"] * loaded_share
    deadline = time.monotonic() + 600
    pgid = os.getpgid(process.pid)
    try:
        # The group holds still (SIGSTOP) while its ledger is read, so that it cannot run past
        # the share between two reads: a tiny model loads every shard within ~1 s.
        while time.monotonic() < deadline and process.poll() is None:
            os.killpg(pgid, signal.SIGSTOP)
            if catalog(ws, collection).exists() and ledger(ws, collection)["loaded"] >= target:
                break
            os.killpg(pgid, signal.SIGCONT)
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be killed"
        assert [b["status"] for b in catalog(ws, collection).read("builds").to_pylist()] == [
            "building"], "the run was past its stream when it was stopped"
    except BaseException:
        os.killpg(pgid, signal.SIGCONT)
        raise


def _assert_group_gone(pgid: int) -> None:
    """No process of the killed group survives (Dask workers, Milvus Lite, Prefect servers)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        alive = []
        for proc in psutil.process_iter(["pid", "status"]):
            try:
                if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    alive.append(proc.pid)
            except (ProcessLookupError, psutil.Error):
                continue
        if not alive:
            return
        time.sleep(0.5)
    raise AssertionError(f"processes of the killed group still run: {alive}")


def assert_complete(ws: dict, collection: str) -> None:
    """Exactly the reference's rows, and a further run finds nothing to do."""
    assert rows(ws, collection) == ws["reference"]["rows_in_milvus"]
    again = ingest(ws, collection)
    assert again.returncode == 0, again.stderr[-3000:]
    done = summary_of(again)
    assert done["changes"]["unchanged"] == FILES and done["passages_embedded"] == 0
    # No FP32 intermediate, and no token-id sidecar, is left behind.
    shards = Path(catalog(ws, collection).root).parent / "shards"
    assert not list(shards.glob("*/embeddings-*")) and not list(shards.glob("*/tokens-*"))


