"""The deployments for real: `vecpress serve` against a real Prefect server, a real watched folder.

The session's Prefect server (a real API process with its event system) receives the three
deployments from a `vecpress serve --api-url` subprocess, which also runs the watcher and the
runner. Files dropped into, changed in and deleted from the watched folder must each lead to
incremental runs that touch exactly those files.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import psutil
import pytest
from helpers import milvus_rows

from vecpress.deployments.definitions import deployment_names
from vecpress.infra.milvus import MilvusStore
from vecpress.infra.settings import MilvusSettings, Settings
from vecpress.infra.storage import CollectionPaths
from vecpress.tasks.collection.catalog import Catalog

pytestmark = pytest.mark.slow
COLLECTION = "watched"
FLOW = "vecpress-ingest"

# Twelve hours away, so that the nightly schedule never starts a run during the module.
NIGHTLY = f"30 {(time.gmtime().tm_hour + 12) % 24} * * *"


def _doc(paragraphs: list[tuple[str, str]], start: int, count: int = 12) -> str:
    return "\n\n".join(t for _, t in paragraphs[start : start + count])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, prefect_harness, model_cache, dask_address,
           tiny_model: str):
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("served")
    inbox = root / "inbox"
    env = os.environ | {
        "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
        # Deployments, triggers and runs are the subject, not the model: the tiny random BERT.
        "VECPRESS_MODEL__PATH": tiny_model,
        # Small corpora: short passages and a small codec (PCA needs pca_dim training vectors).
        "VECPRESS_CHUNK__MAX_TOKENS": "48", "VECPRESS_CHUNK__OVERLAP_TOKENS": "8",
        "VECPRESS_CODEC__PCA_DIM": "32", "VECPRESS_CODEC__PQ_M": "8",
        "VECPRESS_DASK__ADDRESS": dask_address,
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    }
    # The API named by --api-url only, with Prefect imported before serve takes the URL, as it is
    # when serve starts its own server (which imports Prefect first): set in the environment
    # alone, the URL missed Prefect's settings, so the deployments went to an ephemeral server of
    # serve's own and every run crashed looking for itself on this one.
    env.pop("PREFECT_API_URL", None)
    log = (root / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-c", PREFECT_IMPORTED_FIRST, "serve", str(inbox), "--collection", COLLECTION,
         "--storage-root", str(root / "data"), "--milvus-uri", str(root / "data" / "milvus.db"),
         "--api-url", str(PREFECT_API_URL.value()), "--cron", NIGHTLY, "--debounce", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Registered, and the trigger's automation stored (on SQLite the server loads it into
        # its trigger cache as that write commits): events from here on start runs.
        _wait_for(lambda: _registered(len(deployment_names(COLLECTION))) and _automations(), 180,
                  root)
        yield {"root": root, "inbox": inbox, "data": root / "data", "pid": proc.pid}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


PREFECT_IMPORTED_FIRST = ("import runpy, prefect.context; "
                          "runpy.run_module('vecpress', run_name='__main__', alter_sys=True)")


def _wait_for(check, timeout_s: float, root: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise AssertionError(f"timed out; serve log:\n{(root / 'serve.log').read_text()[-4000:]}")


def _registered(expected: int) -> bool:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags

    with _client() as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(
            tags=DeploymentFilterTags(all_=[COLLECTION])))
    return len(found) == expected


def _automations() -> list:
    with _client() as client:
        on_change = client.read_deployment_by_name(
            f"{FLOW}/{deployment_names(COLLECTION)['on-change']}")
        return client.read_resource_related_automations(f"prefect.deployment.{on_change.id}")


def _client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _runs(deployment: str) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with _client() as client:
        return client.read_flow_runs(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=[deployment])))


def _summaries(data: Path, collection: str) -> dict[str, dict]:
    runs = data / "collections" / collection / "runs"
    return {p.parent.name: json.loads(p.read_text()) for p in runs.glob("*/summary.json")}


def _settle(served: dict, before: dict[str, dict], files_expected: int) -> list[dict]:
    """Wait until the on-change runs have handled ``files_expected`` file changes; return them."""
    on_change = deployment_names(COLLECTION)["on-change"]

    def done() -> bool:
        new = [s for k, s in _summaries(served["data"], COLLECTION).items() if k not in before]
        handled = sum(s["changes"][k] for s in new for k in ("new", "changed", "deleted"))
        idle = all(r.state and r.state.is_final() for r in _runs(on_change))
        return handled >= files_expected and idle

    _wait_for(done, 420, served["root"])
    return [s for k, s in sorted(_summaries(served["data"], COLLECTION).items()) if k not in before]


def _rows(served: dict) -> dict[int, str]:
    build = Catalog(CollectionPaths(str(served["data"]), COLLECTION).root).active().build
    store = MilvusStore(MilvusSettings(uri=str(served["data"] / "milvus.db")))
    try:
        store.load(build)
        hits = store.client.query(build, filter="pk >= 0", output_fields=["pk", "text"],
                                  limit=16_384)
        return {h["pk"]: h["text"] for h in hits}
    finally:
        store.close()


def test_deployments_exist_with_schedule_and_typed_form(served):
    names = deployment_names(COLLECTION)
    with _client() as client:
        nightly = client.read_deployment_by_name(f"{FLOW}/{names['nightly']}")
        manual = client.read_deployment_by_name(f"{FLOW}/{names['manual']}")
        on_change = client.read_deployment_by_name(f"{FLOW}/{names['on-change']}")
        automations = client.read_resource_related_automations(
            f"prefect.deployment.{on_change.id}")
    assert [s.schedule.cron for s in nightly.schedules] == [NIGHTLY]
    assert nightly.parameters["sources"] == [str(served["inbox"])]
    assert not manual.schedules and not on_change.schedules
    schema = manual.parameter_openapi_schema
    assert set(schema["required"]) >= {"sources", "settings"}
    model = schema["definitions"]["ModelSettings"]["properties"]
    assert model["variant"]["enum"] == ["fp32", "int8", "fp16"]
    assert "Token budget" in model["max_batch_tokens"]["description"]
    assert "MilvusSettings" in schema["definitions"] and "CodecSettings" in schema["definitions"]
    assert manual.parameters["settings"]["collection"] == COLLECTION
    assert len(automations) == 1 and automations[0].trigger.expect == {"vecpress.files.changed"}


def test_manual_run_with_parameters_loads_rows(served, paragraphs, tmp_path, tiny_model):
    from prefect.deployments import run_deployment

    src = tmp_path / "manual"
    src.mkdir()
    for n in range(3):
        (src / f"m{n}.md").write_text(_doc(paragraphs, 1500 + 40 * n, 30))
    db = served["root"] / "manual.db"
    settings = Settings(collection="manual_run", storage_root=str(served["data"]),
                        milvus={"uri": str(db)}, codec={"pca_dim": 32, "pq_m": 8},
                        model={"path": tiny_model},
                        chunk={"max_tokens": 48, "overlap_tokens": 8},
                        dask={"n_workers": 1})
    run = run_deployment(f"{FLOW}/{deployment_names(COLLECTION)['manual']}", timeout=600,
                         parameters={"sources": [str(src)],
                                     "settings": settings.model_dump(mode="json")})
    assert run.state.is_completed(), run.state
    (summary,) = _summaries(served["data"], "manual_run").values()
    assert summary["changes"]["new"] == 3 and summary["passages"] > 0
    with _client() as client:  # the run published its summary table and report as artifacts
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[run.id])))
    kinds = {a.key: a.type for a in artifacts if a.key}
    assert kinds == {"vecpress-manual-run-summary": "table", "vecpress-manual-run-report": "markdown"}
    assert any(a.type == "progress" and a.data == 100.0 for a in artifacts)
    assert milvus_rows(str(served["data"]), "manual_run", str(db)) == summary["passages"] == \
        summary["rows_in_milvus"]


def test_watched_folder_new_changed_deleted_and_burst(served, paragraphs):
    inbox, on_change = served["inbox"], deployment_names(COLLECTION)["on-change"]
    runs_before = len(_runs(on_change))

    # A new file: exactly one run, which embeds only that file's passages.
    (inbox / "a.md").write_text(_doc(paragraphs, 0, 60))
    (first,) = _settle(served, {}, 1)
    assert len(_runs(on_change)) == runs_before + 1
    assert first["changes"] == {"new": 1, "changed": 0, "unchanged": 0, "deleted": 0}
    assert first["passages_embedded"] == first["passages"] == first["rows_in_milvus"] > 0
    rows = _rows(served)

    # A changed file: its chunks are replaced; unchanged passage text is not embedded again.
    before = _summaries(served["data"], COLLECTION)
    new_text = "Zebra crossings are painted white so that drivers see them at night."
    (inbox / "a.md").write_text(_doc(paragraphs, 0, 60) + "\n\n" + new_text)
    (second,) = _settle(served, before, 1)
    assert second["changes"]["changed"] == 1
    assert second["passages_reused"] > 0 and second["passages_embedded"] < second["passages"]
    rows_after = _rows(served)
    assert any(new_text in t for t in rows_after.values())
    assert len(rows_after) == second["passages"]

    # A deleted file: its rows go.
    before = _summaries(served["data"], COLLECTION)
    (inbox / "a.md").unlink()
    (third,) = _settle(served, before, 1)
    assert third["changes"]["deleted"] == 1 and third["rows_deleted"] == len(rows_after)
    assert _rows(served) == {}

    # Twenty files at once: each processed exactly once, however the burst is split into runs.
    before = _summaries(served["data"], COLLECTION)
    for n in range(20):
        (inbox / f"burst{n:02d}.md").write_text(_doc(paragraphs, 100 + 10 * n, 8))
    burst = _settle(served, before, 20)
    assert sum(s["changes"]["new"] for s in burst) == 20
    assert sum(s["changes"]["changed"] for s in burst) == 0
    assert sum(s["passages_embedded"] for s in burst) == len(_rows(served)) == \
        burst[-1]["rows_in_milvus"]
    assert len(rows) > 0


def _live_runs(serve_pid: int) -> list[tuple[int, str]]:
    """(pid, state) of the flow-run processes `vecpress serve` started (its `prefect.engine`
    children) whose run is not finished: a process that has reported its final state may still
    be flushing logs while the next run starts, which is not two runs at once."""
    live = []
    for child in psutil.Process(serve_pid).children():
        try:
            if "prefect.engine" not in " ".join(child.cmdline()):
                continue
            run_id = child.environ().get("PREFECT__FLOW_RUN_ID")
        except psutil.Error:
            continue
        with _client() as client:
            state = client.read_flow_run(run_id).state if run_id else None
        if state is None or not state.is_final():
            live.append((child.pid, state.name if state else "?"))
    return live


def _kill_mid_run(pid: int, serve_pid: int, root: Path) -> str | None:
    """SIGKILL a flow-run process whose run is not final and return the run's id once Prefect
    shows it Crashed; None if the run reported its end first. The process is stopped (SIGSTOP)
    while its state is read, so it cannot report in between, but a report it sent just before
    can still be committed after the read: seen once on a loaded CI machine, where the killed
    run ended Completed and no run crashed. So the outcome is read after the kill."""
    try:
        os.kill(pid, signal.SIGSTOP)
        run_id = psutil.Process(pid).environ().get("PREFECT__FLOW_RUN_ID")
        if run_id is None or pid not in {p for p, _ in _live_runs(serve_pid)}:
            os.kill(pid, signal.SIGCONT)
            return None
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, psutil.NoSuchProcess):
        return None

    final: list = []

    def ended() -> bool:
        with _client() as client:
            final[:] = [client.read_flow_run(run_id).state]
        return final[0] is not None and final[0].is_final()

    _wait_for(ended, 120, root)
    return run_id if final[0].type.value == "CRASHED" else None


def _events_emitted(served: dict) -> int:
    return (served["root"] / "serve.log").read_text().count(f"file change(s) for '{COLLECTION}'")


def test_bursts_of_small_files_and_a_killed_run_strand_nothing(served, paragraphs):
    """100 small files in five bursts while the collection outgrows its exact stage. The first
    burst's run is held still (SIGSTOP) while the second burst arrives, so that the second run
    must wait for the deployment's slot in Prefect, holding no process; a later run is killed;
    and every file still ends up in the collection. Each step waits on what it needs to see, so
    the test causes the contention it asserts on a machine of any speed."""
    inbox, on_change = served["inbox"], deployment_names(COLLECTION)["on-change"]
    peak, seen = 0, []

    def burst(n: int) -> None:
        emitted = _events_emitted(served)
        for i in range(n * 20, n * 20 + 20):
            (inbox / f"small{i:03d}.md").write_text(_doc(paragraphs, 400 + 4 * i, 4))
        _wait_for(lambda: _events_emitted(served) > emitted, 120, served["root"])

    def live_run() -> int:
        """The pid of a flow-run process; every wait also checks that one runs at most."""
        found: list[int] = []

        def check() -> bool:
            nonlocal peak, seen
            live = _live_runs(served["pid"])
            if len(live) > peak:
                peak, seen = len(live), live
            found[:] = [pid for pid, _ in live]
            return bool(found)

        _wait_for(check, 300, served["root"])
        return found[0]

    def waiting_for_the_slot() -> bool:
        return any(r.state and r.state.name == "AwaitingConcurrencySlot" for r in _runs(on_change))

    burst(0)
    held = live_run()
    os.kill(held, signal.SIGSTOP)  # it holds the deployment's one slot while the next burst comes
    try:
        burst(1)
        _wait_for(waiting_for_the_slot, 300, served["root"])
        assert [pid for pid, _ in _live_runs(served["pid"])] == [held]  # the waiter holds none
    finally:
        os.kill(held, signal.SIGCONT)
    burst(2)
    live_run()
    for n in (3, 5, 6):  # a run that ended before it was killed cannot crash: burst again
        burst(n)
        if killed := _kill_mid_run(live_run(), served["pid"], served["root"]):
            break
    else:
        pytest.fail("three runs ended before they could be stopped and killed")
    burst(4)
    wanted = {p.name for p in inbox.glob("*.md")}

    def all_in() -> bool:
        catalog = Catalog(CollectionPaths(str(served["data"]), COLLECTION).root)
        active = catalog.active() if catalog.exists() else None
        if active is None:
            return False
        files = catalog.files(active.build)
        idle = all(r.state and r.state.is_final() for r in _runs(on_change))
        return idle and {Path(p).name for p in files.column("path").to_pylist()} >= wanted

    _wait_for(all_in, 600, served["root"])
    assert peak <= 1, f"{peak} live flow runs at once ({seen}): waiting runs must hold no process"
    runs = _runs(on_change)
    with _client() as client:
        waited = [r for r in runs if any(s.name == "AwaitingConcurrencySlot"
                                         for s in client.read_flow_run_states(r.id))]
        killed_states = [s.type.value for s in client.read_flow_run_states(UUID(killed))]
    assert waited, "no run ever waited for the deployment's slot in Prefect"
    assert "CRASHED" in killed_states, killed_states  # (a report sent before the kill may follow)
    assert not [r.id for r in runs if r.state.type.value in ("CRASHED", "FAILED")
                and r.id != UUID(killed)], "only the killed run may have crashed"
    catalog = Catalog(CollectionPaths(str(served["data"]), COLLECTION).root)
    files = catalog.files(catalog.active().build)
    assert {Path(p).name for p in files.column("path").to_pylist()} == wanted
    assert milvus_rows(str(served["data"]), COLLECTION, str(served["data"] / "milvus.db")) == \
        sum(files.column("passages").to_pylist())
    assert _events_emitted(served) >= 5  # serve shows every event it emits
