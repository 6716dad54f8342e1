"""The Dask cluster the stages run on: an existing scheduler, or a local one sized to the machine.

With GPUs and dask-cuda installed, a ``LocalCUDACluster`` starts one worker per GPU; otherwise a
``LocalCluster`` of processes. Each worker's thread count is also ONNX Runtime's intra-op thread
count, so workers × threads never oversubscribes the cores.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin

from vecpress.infra import storage
from vecpress.infra.settings import DaskSettings

log = logging.getLogger(__name__)

# What a local cluster's processes do beside the work, and while there is none: each worker's
# statistical profiler samples its threads every 10 ms and every event loop ticks every 20 ms.
# With Dask's defaults a scheduler and two idle workers took 13.2% of a core, 3.6% with these
# (benchmarks/dask_idle.py, results/dask_idle.json). A pipeline run has no dashboard whose
# profile page would need them.
QUIET_CLUSTER: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}

# A local cluster's dashboard: a free port on this host only. Dask's default, :8787 on every
# interface, is taken by the first of two local runs, and the second printed a UserWarning.
LOCAL_DASHBOARD = "127.0.0.1:0"


@dataclass(frozen=True)
class ClusterInfo:
    kind: str
    workers: int
    threads_per_worker: int
    gpus: int
    dashboard: str = ""  # the Dask dashboard's URL, where one is served (bokeh installed)


def _dashboard(client: Client) -> str:
    """The cluster's dashboard URL, or "" where it has no pages to show (bokeh not installed)."""
    from importlib.util import find_spec

    return client.dashboard_link if find_spec("bokeh") is not None else ""


def gpu_count() -> int:
    """GPUs visible to this process (0 without an NVIDIA driver)."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        import pynvml  # shipped with dask-cuda

        pynvml.nvmlInit()
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0


class SchedulerUnavailableError(OSError):
    """An external Dask scheduler did not answer (an infrastructure error: exit code 3)."""


class StorageOptions(WorkerPlugin):
    """Every worker opens the storage root with the run's ``storage_options`` (workers on other
    hosts share no disk with the flow: all they read and write goes through the root)."""

    def __init__(self, storage_root: str, options: dict[str, Any]) -> None:
        self.storage_root, self.options = storage_root, options

    def setup(self, worker: object) -> None:
        storage.configure(self.storage_root, self.options)


@contextmanager
def dask_client(settings: DaskSettings, storage_root: str = "",
                storage_options: dict[str, Any] | None = None, input_bytes: int | None = None
                ) -> Iterator[tuple[Client, ClusterInfo]]:
    """A connected client for the run; a local cluster is started and stopped around it. With
    ``storage_options`` every worker (also one that joins later) is configured with them. A local
    run of at most ``dask.in_process_bytes`` of ``input_bytes`` gets one in-process worker."""
    small = input_bytes is not None and input_bytes <= settings.in_process_bytes
    with _client(settings, small) as (client, info):
        if storage_options:
            client.register_plugin(StorageOptions(storage_root, storage_options),
                                   name="vecpress-storage-options")
        yield client, info


@contextmanager
def _client(settings: DaskSettings, small: bool = False) -> Iterator[tuple[Client, ClusterInfo]]:
    for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                 "distributed.http.proxy"):
        logging.getLogger(name).setLevel(logging.WARNING)
    if settings.address:
        try:
            client = Client(settings.address, timeout=settings.connect_timeout_s)
        except OSError as exc:
            raise SchedulerUnavailableError(
                f"the Dask scheduler at {settings.address} did not answer ({exc}); start it or "
                "fix --dask-address (VECPRESS_DASK__ADDRESS), then run the same command again"
            ) from exc
        with client:
            info = client.scheduler_info()["workers"].values()
            threads = max((w["nthreads"] for w in info), default=1)
            yield client, ClusterInfo("external", len(info), threads, 0, _dashboard(client))
        return
    gpus = gpu_count()
    # Non-daemonic local workers may start children: the embedder's tokeniser processes
    # (model.tokenizer_processes). An external cluster needs this in its own Dask config.
    with dask.config.set({"distributed.worker.daemon": False, **QUIET_CLUSTER}), \
            _local_client(settings, gpus, in_process=small and not gpus) as pair:
        yield pair


@contextmanager
def _local_client(settings: DaskSettings, gpus: int, in_process: bool
                  ) -> Iterator[tuple[Client, ClusterInfo]]:
    """A LocalCUDACluster with GPUs, else a LocalCluster of worker processes; ``in_process``:
    one worker in this process, its threads the cores, so that a small run's stages start at once
    (worker processes spend seconds importing the model runtime, Arrow and FAISS before their
    first task)."""
    if gpus:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            log.warning("%d GPU(s) found but dask-cuda is not installed; running on CPU "
                        "(pip install 'vecpress[gpu]')", gpus)
        else:
            with LocalCUDACluster(threads_per_worker=settings.threads_per_worker or 1,
                                  dashboard_address=LOCAL_DASHBOARD) as cluster, \
                    Client(cluster) as client:
                yield client, ClusterInfo("LocalCUDACluster", gpus,
                                          settings.threads_per_worker or 1, gpus, _dashboard(client))
            return
    cores = os.cpu_count() or 1
    if in_process:
        workers, threads = 1, settings.threads_per_worker or cores
    else:
        workers = settings.n_workers or min(cores, 4)
        threads = settings.threads_per_worker or max(1, cores // workers)
    try:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads,
                               processes=not in_process, dashboard_address=LOCAL_DASHBOARD,
                               silence_logs=logging.WARNING)
    except RuntimeError as exc:  # Dask's "Nanny failed to start": the workers' own errors came first
        raise RuntimeError(
            f"the local Dask cluster's worker processes did not start ({exc}); their errors are "
            "printed above. From a Python script: each worker imports the script again, so its "
            "vecpress calls belong under `if __name__ == \"__main__\":`") from exc
    with cluster, Client(cluster) as client:
        client.register_plugin(QuietComputeFailures(), name="vecpress-quiet-failures")
        kind = "LocalCluster (in process)" if in_process else "LocalCluster"
        yield client, ClusterInfo(kind, workers, threads, 0, _dashboard(client))


class _DropComputeFailed(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Failed to communicate with scheduler during heartbeat"):
            # a local cluster torn down after a failed run: one line, not a traceback
            record.exc_info, record.exc_text = None, None
        return not str(record.msg).startswith("Compute Failed")


class QuietComputeFailures(WorkerPlugin):
    """A local worker does not print a failed task's traceback: the exception reaches the flow,
    which reports it (with the file and what to do) once, instead of a raw dump per worker. A
    heartbeat that meets the scheduler already closed (the cluster's teardown after a failed run)
    is logged as one line."""

    def setup(self, worker: object) -> None:
        logging.getLogger("distributed.worker").addFilter(_DropComputeFailed())
