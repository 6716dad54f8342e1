"""The whole pipeline with its storage root on S3 (moto's real S3 API server), run by Dask workers
that share no disk with the flow, by two "hosts" at once, and resumed after a kill.

Slow: every step is a whole ``vecpress`` command, as users run them.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from durable import ingest, kill_group_when, summary_of
from helpers import milvus_rows
from s3 import make_bucket, moto_server, s3fs_of, shared_nothing_cluster, storage_options, without_aws

from vecpress.infra import storage
from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs

pytestmark = pytest.mark.slow
TINY = {"VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
        "VECPRESS_CODEC__SAMPLE_SIZE": "600", "VECPRESS_CHUNK__MAX_TOKENS": "48",
        "VECPRESS_CHUNK__OVERLAP_TOKENS": "8", "VECPRESS_INPUTS__FILES_PER_SHARD": "4",
        "VECPRESS_MODEL__PASSAGES_PER_SHARD": "128", "VECPRESS_GC_GRACE_S": "0",
        "COLUMNS": "200", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, model_cache: Path):
    root = tmp_path_factory.mktemp("s3")
    with moto_server(root / "moto.log") as server:
        make_bucket(server, "vpress")
        storage.configure("s3://vpress", storage_options(server))  # this process reads what runs wrote
        server["fs"] = s3fs_of(server)
        server["model"] = tiny_model
        # The flow's own cache holds the run's tiny-model export (a hit, published to the root
        # by the first ingest); workers and the searcher start empty and fetch it from the root.
        server["flow_cache"] = {"VECPRESS_MODEL__CACHE_DIR": str(model_cache)}
        paragraphs = [t for _, t in itertools.islice(stdlib_docstring_paragraphs(), 1500)]
        server["docs"] = {f"doc{i:03d}.txt": "\n\n".join(paragraphs[i * 25:(i + 1) * 25])
                          for i in range(48)}
        yield server


def _base_env(tmp: Path, server: dict) -> dict:
    """A process of its own "host": own home and temp folder, nothing of the test's AWS setup."""
    (tmp / "tmp").mkdir(parents=True, exist_ok=True)
    from prefect.settings import PREFECT_API_URL

    return without_aws(os.environ) | TINY | {
        "HOME": str(tmp), "TMPDIR": str(tmp / "tmp"), "VECPRESS_MODEL__PATH": server["model"],
        "PREFECT_API_URL": str(PREFECT_API_URL.value())}


def _wait_until(condition, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, f"not reached within {timeout_s:.0f} s"
        time.sleep(0.2)


def _listing(s3: dict, folder: str) -> list[str]:
    s3["fs"].invalidate_cache()
    return s3["fs"].ls(folder) if s3["fs"].exists(folder) else []


def _vecpress(env: dict, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vecpress", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=900)


def _upload(server: dict, prefix: str, names: list[str]) -> None:
    for name in names:
        server["fs"].pipe(f"{prefix}/{name}", server["docs"][name].encode())


def test_ingest_update_search_reindex_and_gc_on_s3_with_workers_sharing_no_disk(
        s3: dict, tmp_path: Path, prefect_harness) -> None:
    names = sorted(s3["docs"])[:40]
    _upload(s3, "vpress/corpus", names)
    flow_env = _base_env(tmp_path / "flow", s3) | s3["flow_cache"] | {
        # the flow's credentials come from the storage_options setting, not AWS variables
        "VECPRESS_STORAGE_OPTIONS": json.dumps(storage_options(s3))}
    worker_env = without_aws(os.environ) | {"HF_HUB_OFFLINE": "1"}  # no credentials, no settings
    worker_env = {k: v for k, v in worker_env.items() if not k.startswith("VECPRESS_")}
    db = str(tmp_path / "kb.db")
    common = ["--storage-root", "s3://vpress/root", "--milvus-uri", db, "--collection", "kb"]
    with shared_nothing_cluster(tmp_path / "cluster", 2, worker_env) as (address, homes):
        first = _vecpress(flow_env, "ingest", "s3://vpress/corpus", *common, "--dask-address",
                          address, "--json", cwd=tmp_path / "flow")
        assert first.returncode == 0, first.stderr[-3000:]
        summary = summary_of(first)
        assert summary["changes"]["new"] == 40 and summary["rows_in_milvus"] > 500
        assert milvus_rows("s3://vpress/root", "kb", db) == summary["rows_in_milvus"]
        # The footprint lists the bucket's objects; the rescoring store is on the flow's host.
        tiers = {t: f["bytes"] for t, f in summary["footprint"]["tiers"].items()}
        listed = s3["fs"].find("vpress/root/collections/kb", detail=True)
        assert sum(n for kind, n in tiers["at rest on the storage root"].items()
                   if kind not in ("run logs", "lease (while a run holds it)")) == sum(
            info["size"] for key, info in listed.items()
            if "/runs/" not in key and "/lease/" not in key)  # the run's log and lease change
        assert tiers["at rest on the search host"]["rescoring store (mapped codes)"] > 0
        # Each worker ran the model from its own copy, fetched from the storage root.
        artifact = s3["fs"].ls("vpress/root/models", detail=False)
        assert len(artifact) == 1 and s3["fs"].exists(f"{artifact[0]}/complete")
        name = artifact[0].rsplit("/", 1)[-1]
        for home in homes:
            assert (home / "tmp" / "vecpress-models" / name / "model.onnx").is_file(), home
            assert (home / "tmp" / "vecpress-models" / name / "tokenizer.json").is_file()

        # An incremental run: one file deleted, one new, the rest unchanged.
        s3["fs"].rm("vpress/corpus/" + names[0])
        _upload(s3, "vpress/corpus", [sorted(s3["docs"])[40]])
        second = _vecpress(flow_env, "ingest", "s3://vpress/corpus", *common, "--dask-address",
                           address, "--json", cwd=tmp_path / "flow")
        assert second.returncode == 0, second.stderr[-3000:]
        changes = summary_of(second)["changes"]
        assert (changes["new"], changes["deleted"], changes["unchanged"]) == (1, 1, 39)
        rows = summary_of(second)["rows_in_milvus"]
        assert milvus_rows("s3://vpress/root", "kb", db) == rows

    # Garbage collection on S3: the deleted file's shard group is gone, no FP32 file is left.
    from vecpress.tasks.collection.catalog import Catalog

    catalog = Catalog("s3://vpress/root/collections/kb")
    groups = set(catalog.read("files").column("group_id").to_pylist())
    stored = {p.rsplit("/", 1)[-1] for p in s3["fs"].ls("vpress/root/collections/kb/shards",
                                                         refresh=True)}
    assert stored == groups
    assert not s3["fs"].glob("vpress/root/collections/kb/shards/*/embeddings-*")
    assert not s3["fs"].glob("vpress/root/collections/kb/shards/*/tokens-*")

    # Search from a third "host" with an empty model cache: the model comes from the root.
    search_env = _base_env(tmp_path / "searcher", s3) | {
        "VECPRESS_STORAGE_OPTIONS": json.dumps(storage_options(s3))}
    query = next(p for p in s3["docs"][names[5]].split("\n\n") if 8 < len(p.split()) < 25)
    found = _vecpress(search_env, "search", query, "--storage-root", "s3://vpress/root",
                      "--milvus-uri", db, "--collection", "kb", "--json", "-k", "3")
    assert found.returncode == 0, found.stderr[-3000:]
    hits = json.loads(found.stdout.strip().splitlines()[-1])["results"]
    assert any(h["source"].endswith(names[5]) for h in hits)
    assert list((tmp_path / "searcher" / ".cache" / "vecpress" / "models").glob("*/model.onnx"))

    # Reindex from the archive on S3 into another collection: the same rows.
    copy = _vecpress(flow_env, "reindex", "--from-archive", "s3://vpress/root/collections/kb",
                     "--collection", "kb2", "--storage-root", "s3://vpress/root", "--milvus-uri",
                     str(tmp_path / "kb2.db"), "--json", cwd=tmp_path / "flow")
    assert copy.returncode == 0, copy.stderr[-3000:]
    assert json.loads(copy.stdout[copy.stdout.index("{"):])["rows_in_milvus"] == rows


def test_two_hosts_take_turns_on_one_s3_collection(s3: dict, tmp_path: Path,
                                                   prefect_harness) -> None:
    _upload(s3, "vpress/turns", sorted(s3["docs"])[:12])
    lease = "vpress/root/collections/turns/lease"
    runs = []
    for host in ("host-a", "host-b"):
        env = _base_env(tmp_path / host, s3) | s3["env"] | s3["flow_cache"] | {
            "VECPRESS_DASK__N_WORKERS": "1", "VECPRESS_DASK__THREADS_PER_WORKER": "1",
            "VECPRESS_LEASE_TTL_S": "600"}  # host-a's lease outlives its stop, however slow b is
        runs.append(subprocess.Popen(
            [sys.executable, "-m", "vecpress", "ingest", "s3://vpress/turns", "--storage-root",
             "s3://vpress/root", "--milvus-uri", str(tmp_path / "turns.db"), "--collection",
             "turns", "--json"], env=env, cwd=tmp_path / host, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True))
        if host == "host-a":  # host-a holds the lease, and is held still while host-b queues
            _wait_until(lambda: "holder.json" in str(_listing(s3, lease)), runs[0])
            os.kill(runs[0].pid, signal.SIGSTOP)
    try:
        _wait_until(lambda: len(_listing(s3, f"{lease}/queue")) == 2, runs[1])
    finally:
        os.kill(runs[0].pid, signal.SIGCONT)
    outputs = [run.communicate(timeout=900) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err[-3000:]
    first, second = (json.loads(out[out.index("{\n"):]) for out, _ in outputs)
    # One run did the work; the other waited for it, then found nothing left to do.
    assert first["changes"]["new"] == 12 and first["passages_embedded"] > 0
    assert second["changes"]["unchanged"] == 12 and second["passages_embedded"] == 0
    assert "another ingest of this collection is running" in outputs[1][1]
    assert "holder.json" not in str(_listing(s3, lease))


def test_a_killed_run_on_s3_is_finished_by_the_next(s3: dict, durable_ws: dict) -> None:
    """The durable ingest holds on object storage: SIGKILL of the whole run (its lease left
    behind), then the same command redoes only what was not committed."""
    ws = durable_ws | {"storage_root": "s3://vpress/durable", "env": durable_ws["env"] | s3["env"]}
    share = 0.4
    at_kill = kill_group_when(ws, "killed", share)
    assert at_kill["loaded"] >= share * ws["reference"]["shards"]
    assert s3["fs"].exists("vpress/durable/collections/killed/lease/holder.json")  # stranded
    # The rerun starts its own cluster too, as the killed run did: the suite's shared cluster's
    # workers hold whatever S3 options earlier tests of the worker configured (a CI run failed
    # with NoCredentialsError there after other S3 tests; alone, the test passed).
    own_cluster = {k: v for k, v in ws["env"].items() if k != "VECPRESS_DASK__ADDRESS"}
    rerun = ingest(ws, "killed", env=own_cluster)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    summary = summary_of(rerun)
    total = ws["reference"]["passages"]
    assert summary["passages_embedded"] < total * (1 - share) + 200
    assert summary["shards_skipped"] + summary["changes"]["unchanged"] > 0
    assert milvus_rows("s3://vpress/durable", "killed", str(ws["root"] / "killed.db")) == \
        ws["reference"]["rows_in_milvus"]
    again = summary_of(ingest(ws, "killed", env=own_cluster))
    assert again["passages_embedded"] == 0 and again["changes"]["new"] == 0
    assert not s3["fs"].glob("vpress/durable/collections/killed/shards/*/embeddings-*")
    assert not s3["fs"].glob("vpress/durable/collections/killed/shards/*/tokens-*")
