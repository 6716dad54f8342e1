"""One settings object: defaults, VECPRESS_* environment, CLI flags on top, clear validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from vecpress.cli.common import settings_from_flags
from vecpress.infra.settings import Settings


def test_defaults_are_the_embedded_ones() -> None:
    s = Settings()
    assert s.milvus.uri == str(Path("data/milvus.db").absolute()) and s.milvus.is_lite
    assert s.model.path is None and s.model.variant == "fp32"
    assert s.dask.address is None


def test_local_paths_are_absolute_where_the_command_runs(monkeypatch, tmp_path) -> None:
    """Workers of an existing Dask cluster run in their own folder: a relative root given to a
    command must name the same folder for them (it failed with FileNotFoundError there)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    s = Settings(storage_root="data", model={"cache_dir": "~/models"})
    assert s.storage_root == str(tmp_path / "data")
    # Milvus Lite's file follows a local root; left unset, a collection's own file wins.
    assert s.milvus.uri == str(tmp_path / "data" / "milvus.db")
    assert "uri" not in s.milvus.model_fields_set
    assert Settings(storage_root="s3://bucket/p").milvus.uri == "./data/milvus.db"
    assert Settings(storage_root="data", milvus={"uri": "x.db"}).milvus.uri == "x.db"
    assert s.model.cache_dir == str(tmp_path / "home" / "models")
    assert s.model_cache_dir == tmp_path / "home" / "models"
    assert Settings(storage_root="s3://bucket/root").storage_root == "s3://bucket/root"
    assert Settings.model_validate_json(s.model_dump_json()).storage_root == s.storage_root


def test_environment_then_cli_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VECPRESS_MILVUS__URI", "http://milvus:19530")
    monkeypatch.setenv("VECPRESS_CODEC__PCA_DIM", "128")
    monkeypatch.setenv("VECPRESS_COLLECTION", "from_env")
    s = settings_from_flags(**{"collection": "from_cli", "dask.address": "tcp://sched:8786",
                               "milvus.uri": None})
    assert s.collection == "from_cli"  # a flag beats the environment
    assert s.milvus.uri == "http://milvus:19530" and not s.milvus.is_lite
    assert s.codec.pca_dim == 128  # untouched nested values from the environment survive
    assert s.dask.address == "tcp://sched:8786"


def test_invalid_values_name_the_setting() -> None:
    with pytest.raises(ValidationError, match="collection"):
        Settings(collection="has-dash")
    with pytest.raises(ValidationError, match="pq_m"):
        Settings(codec={"pca_dim": 100, "pq_m": 16})
    with pytest.raises(ValidationError, match="variant"):
        Settings(model={"variant": "fp8"})


def test_fp16_brings_gpu_defaults_that_explicit_values_override(monkeypatch) -> None:
    from vecpress.infra.model_settings import GPU_DEFAULTS

    cpu = Settings().model
    assert (cpu.variant, cpu.max_batch_tokens, cpu.sessions) == ("fp32", 8192, 1)
    gpu_settings = settings_from_flags(**{"model.variant": "fp16"})
    # Shards stay text only on every variant: the ids travel in a sidecar until embedded.
    assert Settings().chunk.keep_token_ids is False and gpu_settings.chunk.keep_token_ids is False
    explicit = settings_from_flags(**{"model.variant": "fp16", "chunk.keep_token_ids": True})
    assert explicit.chunk.keep_token_ids is True
    gpu = gpu_settings.model
    assert {name: getattr(gpu, name) for name in GPU_DEFAULTS} == GPU_DEFAULTS
    monkeypatch.setenv("VECPRESS_MODEL__VARIANT", "fp16")
    monkeypatch.setenv("VECPRESS_MODEL__MAX_BATCH_TOKENS", "65536")
    mixed = settings_from_flags(**{"model.sessions": 3}).model
    assert (mixed.max_batch_tokens, mixed.sessions, mixed.passages_per_shard) == (65536, 3, 65536)
    assert cpu.max_padding == 0.0 and gpu.max_padding is None  # batches cut where lengths change
    monkeypatch.setenv("VECPRESS_MODEL__VARIANT", "int8")
    monkeypatch.setenv("VECPRESS_MODEL__MAX_PADDING", "none")  # full batches, from the shell
    assert settings_from_flags().model.max_padding is None
    # Settings travel to workers as JSON: the same values come back.
    assert type(gpu).model_validate_json(gpu.model_dump_json()) == gpu
