"""A local Prefect server for `vecpress serve`: started as a child process, stopped with it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from vecpress.infra.settings import ServeSettings


class PrefectServerError(RuntimeError):
    """The Prefect server did not come up."""


class LocalPrefectServer:
    """``prefect server start`` on SQLite under ``serve.prefect_home``."""

    def __init__(self, serve: ServeSettings, startup_timeout_s: float = 180) -> None:
        self.serve = serve
        self.timeout = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self.log_path = Path(serve.prefect_home) / "server.log"

    @property
    def api_url(self) -> str:
        return f"http://{self.serve.host}:{self.serve.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.serve.host}:{self.serve.port}"

    def start(self) -> str:
        if _healthy(self.api_url):
            raise PrefectServerError(f"something already answers on {self.api_url}; pass "
                                     f"--api-url {self.api_url} to use it, or choose another --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = os.environ | {"PREFECT_HOME": str(Path(self.serve.prefect_home).resolve()),
                            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                            "PREFECT_SERVER_API_HOST": self.serve.host,
                            "PREFECT_SERVER_API_PORT": str(self.serve.port)}
        env.pop("PREFECT_API_URL", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "prefect", "server", "start", "--host", self.serve.host,
                 "--port", str(self.serve.port)], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PrefectServerError(f"prefect server exited with {self.process.returncode}; "
                                         f"see {self.log_path}")
            if _healthy(self.api_url):
                return self.api_url
            time.sleep(1)
        self.stop()
        raise PrefectServerError(f"prefect server did not answer within {self.timeout:.0f}s; "
                                 f"see {self.log_path}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
