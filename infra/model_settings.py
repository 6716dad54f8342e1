"""The model settings: which sentence-transformers model runs, in which ONNX variant, with what
batching. Part of ``infra.settings.Settings`` (``model.*``, ``VECPRESS_MODEL__*``); kept apart so
that the settings module stays readable."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

Variant = Literal["fp32", "int8", "fp16"]

GPU_DEFAULTS = {"max_batch_tokens": 524_288, "sessions": 2, "passages_per_shard": 65_536,
                "max_padding": None}


class ModelSettings(BaseModel):
    """Which sentence-transformers model runs, exported to which ONNX variant."""

    path: str | None = Field(
        None, description="Local sentence-transformers model directory; default: packaged MiniLM."
    )
    variant: Variant = Field("fp32", description="fp32 / int8 on CPU, fp16 on CUDA (CPU fallback).")
    max_batch_tokens: int = Field(
        8192, ge=64, description="Token budget of one inference batch (padded batch × length); "
        "fp16 (GPU) default 524288, halved on out-of-memory."
    )
    max_padding: float | None = Field(
        0.0, ge=0, le=10, description="A batch ends before its longest passage would exceed its "
        "shortest by this share, once it holds an eighth of the token budget: padding costs as "
        "much as text (parts of 2,048 passages were 14% padding) and smaller batches stay in "
        "cache (MiniLM int8, one core: 0.0 embedded 1.24x as fast as None). None ('none'): "
        "batches fill the budget (the fp16 default: not measured on a GPU)."
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
    tokenizer_processes: int = Field(
        0, ge=0, description="Tokenise in this many spawned processes per embedder (GPU workers: "
        "one process tokenises ~27k passages/s, an H100 embeds ~77k). 0: in the worker itself."
    )
    sessions: int = Field(
        1, ge=1, le=8, description="ONNX Runtime sessions per embedder, running batches "
        "concurrently (GPU: each on its own CUDA stream, so copies and Python work overlap the "
        "GPU's; fp16 default 2). CPU workers gain nothing: intra-op threads use the cores."
    )
    passages_per_shard: int = Field(2048, ge=16, description="Passages per embedding task "
                                    "(fp16 default 65536: many batches per task keep a GPU busy).")
    query_prompt: str | None = Field(
        None, description="Text put before each query (e5: 'query: '). Default: the model's own "
        "query prompt (sentence-transformers `prompts`), if any; '' for none. Part of the "
        "model's identity: a collection is searched with the prompts it was built with.")
    document_prompt: str | None = Field(
        None, description="Text put before each passage at ingest (e5: 'passage: '). Default: "
        "the model's own document prompt, if any; '' for none.")
    cache_dir: str | None = Field(
        None, description="Local folder for exported ONNX models; default: <storage_root>/models, "
        "or ~/.cache/vecpress/models when the storage root is an object store."
    )

    @field_validator("max_padding", mode="before")
    @classmethod
    def _padding_none(cls, value: Any) -> Any:
        """``none`` from an environment variable or the run form: batches fill the budget."""
        return None if isinstance(value, str) and value.strip().lower() in ("none", "null") \
            else value

    @model_validator(mode="after")
    def _gpu_defaults_and_floor(self) -> ModelSettings:
        if self.variant == "fp16":  # a GPU worker: defaults measured on an H100 (README, "GPU")
            for name, value in GPU_DEFAULTS.items():
                if name not in self.model_fields_set:
                    setattr(self, name, value)
        if "min_batch_tokens" not in self.model_fields_set:
            self.min_batch_tokens = min(self.min_batch_tokens, self.max_batch_tokens)
        if self.min_batch_tokens > self.max_batch_tokens:
            raise ValueError(
                f"model.min_batch_tokens ({self.min_batch_tokens}) must not exceed "
                f"model.max_batch_tokens ({self.max_batch_tokens})"
            )
        return self
