"""A real S3 API for the object-store tests: moto's standalone server (``moto[server]``), started
in its own process group on a free port, reached through s3fs and delta-rs like any S3 endpoint;
and Dask workers started the way another host would run them (own home, temp and work folder)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "vecpress-test", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {seconds:.0f}s")


@contextmanager
def moto_server(log: Path) -> Iterator[dict]:
    """The server's endpoint and the AWS variables a client needs (``env``)."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                    str(port)], stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        _wait_for_port(port, 60)
        endpoint = f"http://127.0.0.1:{port}"
        yield {"endpoint": endpoint, "env": CREDENTIALS | {"AWS_ENDPOINT_URL": endpoint}}
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def make_bucket(server: dict, bucket: str) -> None:
    import boto3

    env = server["env"]
    boto3.client("s3", endpoint_url=server["endpoint"], region_name=env["AWS_DEFAULT_REGION"],
                 aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=bucket)


def s3fs_of(server: dict):
    import s3fs

    env = server["env"]
    return s3fs.S3FileSystem(key=env["AWS_ACCESS_KEY_ID"], secret=env["AWS_SECRET_ACCESS_KEY"],
                             endpoint_url=server["endpoint"], skip_instance_cache=True)


def storage_options(server: dict) -> dict:
    """The same credentials as an fsspec ``storage_options`` setting instead of AWS variables."""
    env = server["env"]
    return {"key": env["AWS_ACCESS_KEY_ID"], "secret": env["AWS_SECRET_ACCESS_KEY"],
            "client_kwargs": {"endpoint_url": server["endpoint"],
                              "region_name": env["AWS_DEFAULT_REGION"]}}


def without_aws(env: dict) -> dict:
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


@contextmanager
def shared_nothing_cluster(root: Path, workers: int, env: dict) -> Iterator[tuple[str, list[Path]]]:
    """A Dask scheduler and ``workers`` worker processes, each with its own empty home, temp and
    working folder and only ``env`` (no VECPRESS_* settings, no path of the flow's): the
    scheduler's address and each worker's home."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    processes: list[subprocess.Popen] = []
    homes = []
    try:
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--dashboard-address", ":0"], cwd=root,
            stdout=subprocess.DEVNULL, stderr=(root / "scheduler.log").open("w"),
            start_new_session=True))
        _wait_for_port(port, 60)
        for i in range(workers):
            home = root / f"host{i}"
            (home / "tmp").mkdir(parents=True)
            homes.append(home)
            worker_env = env | {"HOME": str(home), "TMPDIR": str(home / "tmp")}
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}",
                 "--nworkers", "1", "--nthreads", "1", "--no-nanny", "--local-directory",
                 str(home / "dask")], cwd=home, env=worker_env, stdout=subprocess.DEVNULL,
                stderr=(home / "worker.log").open("w"), start_new_session=True))
        _wait_for_workers(f"tcp://127.0.0.1:{port}", workers)
        yield f"tcp://127.0.0.1:{port}", homes
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=60) as client:
        client.wait_for_workers(n, timeout=120)
