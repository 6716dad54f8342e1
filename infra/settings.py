"""The one settings object that flows from the CLI / Prefect UI parameters to every stage.

Only this module reads the environment (``VECPRESS_*`` variables, nested with ``__``, e.g.
``VECPRESS_MILVUS__URI``); every other module receives a ``Settings`` (or one of its parts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Variant = Literal["fp32", "int8", "fp16"]


class InputSettings(BaseModel):
    """How source files are found and read."""

    id_field: str = Field("id", description="Record field holding the document id (JSONL/Parquet).")
    text_field: str = Field("text", description="Record field holding the text (JSONL/Parquet).")
    text_suffixes: list[str] = Field(
        [".txt", ".md", ".markdown", ".rst", ".text"],
        description="File endings read as plain text; one file is one document.",
    )
    files_per_shard: int = Field(64, ge=1, description="Input files grouped into one chunking task.")


class ChunkSettings(BaseModel):
    """Token-aware chunking: passages never exceed the model's window."""

    max_tokens: int = Field(192, ge=8, description="Tokens per passage (without special tokens).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens repeated between split neighbours.")
    min_tokens: int = Field(3, ge=1, description="Shorter passages are dropped as noise.")

    @model_validator(mode="after")
    def _overlap_smaller_than_window(self) -> ChunkSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"chunk.overlap_tokens ({self.overlap_tokens}) must be smaller than "
                f"chunk.max_tokens ({self.max_tokens})"
            )
        return self


class ModelSettings(BaseModel):
    """Which sentence-transformers model runs, exported to which ONNX variant."""

    path: str | None = Field(
        None, description="Local sentence-transformers model directory; default: packaged MiniLM."
    )
    variant: Variant = Field("fp32", description="fp32 / int8 on CPU, fp16 on CUDA (CPU fallback).")
    max_batch_tokens: int = Field(
        8192, ge=64, description="Token budget of one inference batch (padded batch × length)."
    )
    min_batch_tokens: int = Field(
        256, ge=1, description="Floor of the token budget: out-of-memory halving stops here and "
        "the batch fails with its passage ids and lengths."
    )
    arena_max_mb: int | None = Field(
        None, ge=1, description="Cap (MiB) on ONNX Runtime's memory arena (CPU arena, or the CUDA "
        "arena for fp16): bounds RSS / GPU memory; allocations beyond it halve the token budget. "
        "Must exceed the model's weights. Default: no cap."
    )
    passages_per_shard: int = Field(2048, ge=16, description="Passages per embedding task.")
    cache_dir: str | None = Field(
        None, description="Local folder for exported ONNX models; default: <storage_root>/models."
    )

    @model_validator(mode="after")
    def _floor_below_budget(self) -> ModelSettings:
        if self.min_batch_tokens > self.max_batch_tokens:
            raise ValueError(
                f"model.min_batch_tokens ({self.min_batch_tokens}) must not exceed "
                f"model.max_batch_tokens ({self.max_batch_tokens})"
            )
        return self


class CodecSettings(BaseModel):
    """PCA + FAISS product quantisation fitted on a sample of the embeddings."""

    pca_dim: int = Field(256, ge=8, description="Dimensions kept by PCA (searched with L2).")
    pq_m: int = Field(32, ge=1, description="PQ sub-quantizers; bytes per code at 8 bits.")
    pq_nbits: int = Field(8, ge=4, le=12, description="Bits per PQ sub-code.")
    sample_size: int = Field(20_000, ge=256, description="Vectors sampled to fit PCA and PQ.")
    seed: int = Field(1234, description="Seed for sampling and training.")

    @model_validator(mode="after")
    def _m_divides_dim(self) -> CodecSettings:
        if self.pca_dim % self.pq_m:
            raise ValueError(
                f"codec.pq_m ({self.pq_m}) must divide codec.pca_dim ({self.pca_dim})"
            )
        return self


class MilvusSettings(BaseModel):
    """Where vectors are served: a Milvus Lite file (default) or a server URI."""

    uri: str = Field("./data/milvus.db", description="Milvus Lite .db path or http://host:19530.")
    token: str = Field("", description="Milvus token (user:password) for servers with auth.")
    index_type: Literal["auto", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW"] = Field(
        "auto", description="auto: IVF_SQ8 on Milvus Lite, IVF_PQ on a server."
    )
    nprobe: int = Field(64, ge=1, description="IVF lists probed per search.")
    rescore_factor: int = Field(8, ge=1, description="ANN returns k × this many candidates.")
    insert_batch_bytes: int = Field(8 << 20, ge=1 << 16, description="Bytes per upsert call.")

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))


class DaskSettings(BaseModel):
    """Which Dask cluster runs the stages."""

    address: str | None = Field(None, description="Existing scheduler; default: a local cluster.")
    n_workers: int | None = Field(None, ge=1, description="Local workers (default: one per GPU, "
                                  "else min(cores, 4)).")
    threads_per_worker: int | None = Field(None, ge=1, description="Threads per local worker; "
                                           "also ONNX Runtime's intra-op threads.")


class Settings(BaseSettings):
    """Everything one ingest or search needs. CLI flags and Prefect parameters fill it."""

    model_config = SettingsConfigDict(
        env_prefix="VECPRESS_", env_nested_delimiter="__", extra="forbid"
    )

    collection: str = Field("vecpress", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
                            description="Milvus collection name.")
    storage_root: str = Field("./data", description="Run artifacts, codecs, archives, model cache.")
    inputs: InputSettings = InputSettings()
    chunk: ChunkSettings = ChunkSettings()
    model: ModelSettings = ModelSettings()
    codec: CodecSettings = CodecSettings()
    milvus: MilvusSettings = MilvusSettings()
    dask: DaskSettings = DaskSettings()

    @property
    def model_cache_dir(self) -> Path:
        """Exported models must be local files for ONNX Runtime, whatever the storage root is."""
        if self.model.cache_dir:
            return Path(self.model.cache_dir)
        return Path(self.storage_root) / "models"
