"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys


def vecpress(workspace: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the real ``vecpress`` CLI in its own process, against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"VECPRESS_MODEL__CACHE_DIR": str(workspace["model_cache"]),
                        "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "vecpress", *args], env=env, capture_output=True,
                          text=True, timeout=600)
