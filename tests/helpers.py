"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def vecpress(workspace: dict, *args: str) -> subprocess.CompletedProcess:
    """Run the real ``vecpress`` CLI in its own process, against the session's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    env = os.environ | {"VECPRESS_MODEL__CACHE_DIR": str(workspace["model_cache"]),
                        "PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "200",
                        **workspace.get("env", {})}
    return subprocess.run([sys.executable, "-m", "vecpress", *args], env=env, capture_output=True,
                          text=True, timeout=600)


def milvus_rows(storage_root: str, collection: str, milvus_uri: str) -> int:
    """Rows in the Milvus collection that serves ``collection`` (its active build)."""
    from vecpress.infra.milvus import MilvusStore
    from vecpress.infra.settings import MilvusSettings
    from vecpress.infra.storage import CollectionPaths
    from vecpress.tasks.collection.catalog import Catalog

    build = Catalog(CollectionPaths(storage_root, collection).root).active()
    store = MilvusStore(MilvusSettings(uri=milvus_uri))
    try:
        return store.count(build.build)
    finally:
        store.close()


def build_tiny_bert(root) -> str:
    """A random 1-layer, 64-d BERT with MiniLM's tokenizer as a sentence-transformers model:
    benchmarks/harness.py's builder, one for the tests and the benchmarks."""
    import sys
    from pathlib import Path

    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.append(benchmarks)
    from harness import build_tiny_bert as build

    return build(Path(root))


def read_inputs(path, settings) -> tuple[list, list]:
    """(records, input errors) of everything under ``path``, as an ingest's readers see them."""
    from vecpress.tasks.inputs.records import InputError
    from vecpress.tasks.inputs.sources import discover, read_records

    files, errors = discover([str(path)], settings)
    records: list = []
    for src in files:
        for item in read_records(src, settings):
            (errors if isinstance(item, InputError) else records).append(item)
    return records, errors


def write_jsonl_texts(path: Path, texts: list[str], id_prefix: str) -> Path:
    """A JSONL corpus of ``texts``, one record each, ids ``<id_prefix><n>``."""
    path.write_text("".join(json.dumps({"id": f"{id_prefix}{i}", "text": t}) + "\n"
                            for i, t in enumerate(texts)))
    return path
