"""deployments/prefect.yaml for real: `prefect deploy` onto a process work pool of the session's
Prefect server, then a `prefect worker` runs the manual deployment as a platform would: the flow
run is a separate process configured by the deployment's environment variables alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import milvus_rows

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _prefect(env: dict, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "prefect", *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_the_work_pool_deployments_deploy_and_a_worker_runs_one(tmp_path, paragraphs, model_cache,
                                                                tiny_model, prefect_harness) -> None:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    _prefect(env, "work-pool", "create", "vecpress", "--type", "process", "--overwrite")
    _prefect(env, "--no-prompt", "deploy", "--prefect-file", "deployments/prefect.yaml", "--all")
    with get_client(sync_client=True) as client:
        nightly = client.read_deployment_by_name("vecpress-ingest/kb-nightly")
        manual = client.read_deployment_by_name("vecpress-ingest/kb-manual")
    assert nightly.work_pool_name == manual.work_pool_name == "vecpress"
    assert nightly.schedules[0].schedule.cron == "0 2 * * *"
    assert nightly.job_variables["env"]["VECPRESS_DASK__ADDRESS"] == "tcp://dask-scheduler:8786"
    assert nightly.parameters["settings"] == {"collection": "kb"}
    # Prefect 3 keeps the limit as a global concurrency limit (its old field warns when read)
    limit = manual.global_concurrency_limit
    assert (limit.limit if limit is not None else manual.concurrency_limit) == 1

    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in paragraphs[:300]))
    run_env = {"VECPRESS_STORAGE_ROOT": str(tmp_path / "data"),
               "VECPRESS_MILVUS__URI": str(tmp_path / "kb.db"), "VECPRESS_DASK__ADDRESS": "",
               "VECPRESS_MODEL__VARIANT": "fp32", "VECPRESS_MODEL__CACHE_DIR": str(model_cache),
               # the work pool is the subject, not the model: the tiny random BERT
               "VECPRESS_MODEL__PATH": tiny_model, "VECPRESS_CODEC__PCA_DIM": "32",
               "VECPRESS_CODEC__PQ_M": "8",
               "VECPRESS_DASK__N_WORKERS": "1", "HF_HUB_OFFLINE": "1"}
    flow_run = run_deployment("vecpress-ingest/kb-manual", parameters={"sources": [str(corpus)]},
                              job_variables={"env": run_env}, timeout=0)
    worker = subprocess.Popen([sys.executable, "-m", "prefect", "worker", "start", "--pool",
                               "vecpress", "--run-once"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = worker.communicate(timeout=600)
    finally:
        if worker.poll() is None:
            worker.kill()
    deadline = time.monotonic() + 60
    with get_client(sync_client=True) as client:
        while (state := client.read_flow_run(flow_run.id).state).is_final() is False and \
                time.monotonic() < deadline:
            time.sleep(1)
    assert state.is_completed(), output[-3000:]
    assert milvus_rows(str(tmp_path / "data"), "kb", str(tmp_path / "kb.db")) >= 300
