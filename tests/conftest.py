"""Shared fixtures: real model export, real text, one Prefect test harness for the session."""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from groups import check, group_of, make_scheduler, order
from keepalive_probe import finish, start_beside_session
from leftovers import LEFTOVER_MARK, fail_on_leftovers, note_children, print_report

# No model hub is reachable here, and none must ever be contacted.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# A CLI run without PREFECT_API_URL gets a temporary API, as with --no-server: no test leaves the
# shared local Prefect server running in the user's home (test_local_server starts its own).
os.environ["VECPRESS_SERVER_AUTO_START"] = "false"
# New Prefect servers start from a migrated database (infra/prefect_db.py) kept outside the user's
# home; its first server of this Prefect version makes it (test_prefect_lifecycle checks how).
os.environ.setdefault("VECPRESS_SERVER_DATABASE_TEMPLATES",
                      os.path.join(tempfile.gettempdir(), "vecpress-test-prefect-templates"))
# Every process a test starts inherits this mark, also one that outlives its parent and is
# re-parented to init: the session's finaliser finds leftovers by it (``pytest_sessionfinish``).
# Under xdist (``make test``) the workers keep the controller's mark, and only the controller checks.
if "PYTEST_XDIST_WORKER" not in os.environ:
    os.environ[LEFTOVER_MARK] = str(os.getpid())

from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.export import export_model
from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir
from vecpress.tasks.inputs.corpus import probe_passages, stdlib_docstring_paragraphs


@pytest.fixture(scope="session")
def paragraphs() -> list[tuple[str, str]]:
    """Real text: (id, paragraph) pairs from the installed standard library's docstrings."""
    return list(itertools.islice(stdlib_docstring_paragraphs(), 3000))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this pytest run that both xdist workers see, so that a model is built and
    exported once per run rather than once per worker (an export takes seconds); each build or
    export holds a lock there while the other worker waits for its result."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if "PYTEST_XDIST_WORKER" in os.environ else base


@pytest.fixture(scope="session")
def model_cache(run_dir: Path) -> Path:
    path = run_dir / "models"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def tiny_artifact(run_dir: Path, model_cache: Path) -> ModelArtifact:
    """One random 1-layer, 64-d BERT (``helpers.build_tiny_bert``, seeded), built once and
    exported once into ``model_cache``: its ONNX artifact, for tests of the embedder's own
    machinery (batching, windows, sessions, processes), which any model exercises alike."""
    from filelock import FileLock
    from helpers import build_tiny_bert

    with FileLock(run_dir / "tiny.lock"):
        spec = read_model_spec(Path(build_tiny_bert(run_dir / "tiny")))
        return export_model(spec, "fp32", model_cache, probe_passages)


@pytest.fixture(scope="session")
def tiny_model(tiny_artifact: ModelArtifact) -> str:
    """The tiny BERT's folder, for every test whose subject is not the model (its export is in
    ``model_cache``). Read-only: a test that changes model files copies it first."""
    return tiny_artifact.model_dir


@pytest.fixture(scope="session")
def fp32_artifact(run_dir: Path, model_cache: Path, paragraphs: list[tuple[str, str]]
                  ) -> ModelArtifact:
    from filelock import FileLock

    spec = read_model_spec(resolve_model_dir(None))
    with FileLock(run_dir / "minilm.lock"):
        return export_model(spec, "fp32", model_cache, lambda: [t for _, t in paragraphs[:64]])


@pytest.fixture(scope="session")
def docstring_embeddings(fp32_artifact: ModelArtifact, paragraphs: list[tuple[str, str]]
                         ) -> np.ndarray:
    """MiniLM FP32 embeddings of the first 1,500 paragraphs, computed once for every test that
    needs real embeddings (codec, auto-tune, drift): the tests must not write to it."""
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    vectors = OnnxEmbedder(fp32_artifact).encode([t for _, t in paragraphs[:1500]])
    vectors.setflags(write=False)
    return vectors


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect API for every flow test (starting it costs 10–20 s)."""
    import os

    from prefect.testing.utilities import prefect_test_harness

    # As on the server `vecpress serve` starts: queued deployment runs ask for a slot every 5 s.
    os.environ["PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS"] = "5"
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def dask_address() -> Iterator[str]:
    """One local Dask cluster (2 worker processes, as a run's own local cluster on 2 cores) that
    CLI runs reach with ``VECPRESS_DASK__ADDRESS``, the documented way to use an existing
    cluster, instead of starting and stopping their own each time. Tests about a run's own
    cluster (its process group killed, a worker killed) keep starting theirs."""
    import logging

    import dask
    import psutil
    from distributed import Client, LocalCluster

    from vecpress.infra.cluster import LOCAL_DASHBOARD, QUIET_CLUSTER

    # Quiet while idle (most of the session), as a run's own local cluster is.
    with dask.config.set({"distributed.worker.daemon": False, **QUIET_CLUSTER}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=LOCAL_DASHBOARD, silence_logs=logging.WARNING) as cluster:
        with Client(cluster) as client:
            workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
        yield cluster.scheduler_address
    # The cluster's close stops its workers; one still exiting after 30 s is stopped here, by the
    # fixture that started it (the session's leftover check is for processes nobody stops).
    _, alive = psutil.wait_procs(workers, timeout=30)
    for proc in alive:
        proc.kill()


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real Milvus 2.3.5 standalone server (from the ``milvus`` package); yields its URI."""
    from milvus import default_server
    from milvus_process import start_milvus

    default_server.set_base_dir(str(tmp_path_factory.mktemp("milvus-server")))
    start_milvus(default_server)
    _RUNNING_MILVUS.append(default_server)
    try:
        yield f"http://127.0.0.1:{default_server.listen_port}"
    finally:
        _stop_milvus()


# The Milvus server while it runs: stopped after the last test that uses it rather than at the
# end of the session, through which it would keep running idle (pytest_runtest_teardown).
_RUNNING_MILVUS: list = []
_LAST_MILVUS_TEST: list[str] = []


def _stop_milvus() -> None:
    while _RUNNING_MILVUS:
        _RUNNING_MILVUS.pop().stop()


@pytest.fixture(scope="session")
def durable_ws(tmp_path_factory: pytest.TempPathFactory, run_dir: Path, model_cache: Path,
               tiny_model: str, dask_address: str, prefect_harness):
    """A corpus, a tiny model and a reference ingest for the durability tests (``durable.py``):
    the corpus and the reference made once per run, for both workers."""
    from durable import durable_workspace
    from prefect.settings import PREFECT_API_URL

    shared = run_dir / "durable"
    shared.mkdir(exist_ok=True)
    return durable_workspace(tmp_path_factory.mktemp("durable"), shared, model_cache, tiny_model,
                             str(PREFECT_API_URL.value()), dask_address)


# Fixtures that start a server (or need one): a test using any of them is ``slow``, outside
# ``make test-fast`` (no servers, no whole CLI runs), whether or not its module says so.
SERVER_FIXTURES = {"prefect_harness", "milvus_server", "dask_address", "durable_ws"}
_PROBE: list = []  # the keepalive probe this session started, if any


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    check(items)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        order(items)
    # Every user of the server is in its group (``check``), so none runs after the group's last.
    _LAST_MILVUS_TEST[:] = [item.nodeid for item in items
                            if group_of(item.nodeid) == "milvus_server"][-1:]


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if item.nodeid in _LAST_MILVUS_TEST:
        _stop_milvus()


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``make test`` runs ``pytest -n 2``: whole groups per worker (tests/groups.py)."""
    return make_scheduler(config, log)


def pytest_configure(config: pytest.Config) -> None:
    """The controller (or a run without xdist) starts the keepalive probe, which only sleeps,
    beside the session rather than in a worker (tests/keepalive_probe.py)."""
    if not hasattr(config, "workerinput"):
        _PROBE[:] = [p for p in [start_beside_session(config.args, config.option.markexpr or "")]
                     if p is not None]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After every fixture is torn down: a process a test started that still runs fails the run
    (and is killed), whatever it is: a Dask worker, a Prefect or Milvus server, a pool. (The
    keepalive probe of a session that did not run its test is stopped first.)"""
    if not hasattr(session.config, "workerinput"):  # the controller, or a run without xdist
        for probe in _PROBE:
            finish(probe)
        fail_on_leftovers(session)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "teardown":  # also in the xdist controller, whose children the workers are
        note_children(report.nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    for probe in _PROBE:  # also where no session ran (``pytest --markers``)
        finish(probe)
    print_report()
