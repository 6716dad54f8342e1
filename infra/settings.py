"""The one settings object that flows from the CLI / Prefect UI parameters to every stage.

Only this module (and ``infra.search_settings``, with the HTTP server's own ``ApiSettings``) reads
the environment (``VECPRESS_*`` variables, nested with ``__``, e.g. ``VECPRESS_MILVUS__URI``); every
other module receives a ``Settings`` (or one of its parts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_serializer, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.search_settings import SearchSettings

Variant = Literal["fp32", "int8", "fp16"]
SECRET_WORDS = ("key", "secret", "token", "password", "credential", "sas")
MASK = "**********"


def masked(options: Any, drop: bool = False) -> Any:
    """Storage options with every credential-like value masked, or dropped (nested dicts too)."""
    if not isinstance(options, dict):
        return options
    out = {}
    for key, value in options.items():
        if isinstance(value, dict) or not any(w in str(key).lower() for w in SECRET_WORDS):
            out[key] = masked(value, drop)
        elif not drop:
            out[key] = MASK
    return out


class InputSettings(BaseModel):
    """How source files are found and read."""

    id_field: str = Field("id", description="Record field holding the document id (JSONL/Parquet).")
    text_field: str = Field("text", description="Record field holding the text (JSONL/Parquet).")
    metadata_fields: list[str] | None = Field(
        None, description="JSONL/Parquet fields (and front matter keys) kept as each passage's "
        "metadata (searchable with a filter), with the file's file_bytes and file_modified. "
        "Default: every field but the id and the text; [] keeps none.")
    text_suffixes: list[str] = Field(
        [".txt", ".md", ".markdown", ".rst", ".text"],
        description="File endings read as plain text; one file is one document.",
    )
    files_per_shard: int = Field(64, ge=1, description="At most this many input files form one "
                                 "shard group (one chunking task, the unit of resume).")
    bytes_per_shard: int = Field(1 << 20, ge=1, description="A shard group closes once its files "
                                 "hold this many bytes (1 MiB): chunking spreads over the workers "
                                 "and a killed run redoes little. One larger file is one group.")


class ChunkSettings(BaseModel):
    """Token-aware chunking: passages never exceed the model's window."""

    max_tokens: int = Field(192, ge=8, description="Tokens per passage (without special tokens).")
    overlap_tokens: int = Field(32, ge=0, description="Tokens repeated between split neighbours.")
    min_tokens: int = Field(3, ge=1, description="Shorter passages are dropped as noise.")
    keep_token_ids: bool = Field(
        False, description="Keep each passage's token ids in its shard for good (about doubles "
        "passage-shard size). Either way the embed stage does not tokenise again: without this "
        "the ids travel in a sidecar file that is deleted once the shard is embedded."
    )

    @model_validator(mode="after")
    def _overlap_smaller_than_window(self) -> ChunkSettings:
        if self.overlap_tokens >= self.max_tokens:
            raise ValueError(
                f"chunk.overlap_tokens ({self.overlap_tokens}) must be smaller than "
                f"chunk.max_tokens ({self.max_tokens})"
            )
        return self


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


class CodecSettings(BaseModel):
    """PCA + FAISS product quantisation fitted on a sample of the embeddings."""

    pca_dim: int | None = Field(None, ge=8, description="Dimensions kept by PCA (searched with "
                                "L2); default: enough to keep codec.pca_variance of the sample's "
                                "variance, a multiple of pq_m, at least codec.pca_min_dim.")
    pca_variance: float = Field(0.99, gt=0.0, le=1.0, description="Share of the variance the "
                                "default PCA dimension keeps (0.99: 300-320 of MiniLM's 384 on "
                                "docstrings, READMEs and quotations).")
    pca_min_dim: int = Field(64, ge=8, description="Floor of the default PCA dimension (capped "
                             "at the model's dimension).")
    pq_m: int = Field(32, ge=1, description="PQ sub-quantizers; bytes per code at 8 bits.")
    pq_nbits: int = Field(8, ge=4, le=12, description="Bits per PQ sub-code.")
    milvus_dim: int | None = Field(
        128, ge=8, description="Leading PCA components Milvus stores and indexes (the "
        "highest-variance ones; a multiple of pq_m, capped at the PCA dim); rescoring reads all "
        "of them from the codec.refine codes. None: every component.")
    refine: Literal["sq8", "sq6", "sq4", "fp16"] = Field(
        "sq8", description="How the archive and the search host's rescoring store keep each PCA "
        "vector: a FAISS scalar quantizer trained with the codec, 8, 6 or 4 bits per dimension, "
        "or FP16 (16 bits). sq8 halves FP16's bytes for ~0.004 of recall@10.")
    sample_size: int = Field(20_000, ge=256, description="Vectors sampled to fit PCA and PQ.")
    min_fit_vectors: int = Field(1_000, ge=16, description="A new collection with fewer passages "
                                 "keeps whole vectors (exact search, no PCA/PQ); the first ingest "
                                 "that brings it to this many fits the codec into a new build.")
    seed: int = Field(1234, description="Seed for sampling and training.")
    random_rotation: bool = Field(False, description="Randomly rotate the PCA output: spreads variance "
                                  "evenly over PQ sub-spaces (also Milvus's own IVF_PQ) at no cost.")
    opq: bool = Field(False, description="Learn an OPQ rotation after PCA (balances PQ sub-spaces; "
                      "the rotated vectors are what Milvus stores).")
    ivf_nlist: int | None = Field(None, ge=1, description="IVF coarse lists in the codec (PQ on "
                                  "residuals); a Milvus server IVF_PQ index then uses this nlist.")
    train_backend: Literal["auto", "faiss", "torch"] = Field(
        "auto", description="auto: FAISS GPU build if it sees a GPU, else k-means in torch on a CUDA "
        "device, else faiss-cpu. torch runs on CUDA when available, else on the CPU.")
    drift_tolerance: float = Field(1.3, gt=1.0, description="New data drifts when its reconstruction "
                                   "error exceeds the training error by this factor.")
    drift_action: Literal["warn", "retrain"] = Field("warn", description="What a failed drift check "
                                                     "asks for.")
    drift_min_vectors: int = Field(32, ge=1, description="Fewest new vectors a drift check "
                                   "judges: a run with fewer keeps the codec unchecked (one "
                                   "same-kind passage read as drifted 12% of the time: "
                                   "benchmarks/results/drift_sample.json).")
    recall_target: float | None = Field(None, gt=0.0, le=1.0, description="Auto-tune PCA dim and M: "
                                        "smallest code whose rescored recall@10 meets this.")
    autotune_pca_dims: list[int] = Field([128, 192, 256, 320, 384], description="PCA dims tried "
                                         "(capped at the embedding dimension).")
    autotune_pq_m: list[int] = Field([8, 16, 24, 32], description="PQ sub-quantizers tried.")
    autotune_refine: list[Literal["sq8", "sq6", "sq4", "fp16"]] = Field(
        ["sq4", "sq6", "sq8", "fp16"], description="Rescoring tiers tried (codec.refine); the "
        "choice costs index code plus rescoring bytes.")
    autotune_rotation: list[bool] = Field([False, True], description="Random rotation after PCA, "
                                          "tried off and on.")
    autotune_probe_shares: list[float] = Field([0.25, 1.0], description="Shares of "
                                               "the IVF lists probed, tried (plus the index "
                                               "plan's own nprobe).")
    autotune_rescore_factors: list[int] = Field([16, 64], description="Rescoring "
                                                "factors tried (candidates per result).")
    autotune_latency_ms: float | None = Field(None, gt=0, description="Latency budget of the "
                                              "auto-tune's choice: simulated milliseconds per "
                                              "query (one thread, this machine); none: no limit.")
    autotune_queries: int = Field(200, ge=10, description="Sample vectors held out as queries.")

    @model_validator(mode="after")
    def _m_divides_dim(self) -> CodecSettings:
        if self.pca_dim is not None and self.pca_dim % self.pq_m:
            raise ValueError(
                f"codec.pq_m ({self.pq_m}) must divide codec.pca_dim ({self.pca_dim})"
            )
        return self

    @model_validator(mode="after")
    def _enough_to_fit(self) -> CodecSettings:
        """The codec is fitted only on samples it can be fitted on."""
        needed = max((self.pca_dim or 0) + 1, 2 * self.pq_m, 2 * (self.ivf_nlist or 0))
        if min(self.min_fit_vectors, self.sample_size) < needed:
            raise ValueError(f"codec.min_fit_vectors ({self.min_fit_vectors}) must be at least "
                             f"{needed} to fit PCA-{self.pca_dim}, PQ{self.pq_m}"
                             + (f" and {self.ivf_nlist} IVF lists" if self.ivf_nlist else ""))
        # A sample never holds more than sample_size vectors: a smaller sample size lowers it.
        self.min_fit_vectors = min(self.min_fit_vectors, self.sample_size)
        return self


class MilvusSettings(BaseModel):
    """Where vectors are served: a Milvus Lite file (default) or a server URI."""

    uri: str = Field("./data/milvus.db", description="Milvus Lite .db path or http://host:19530; "
                     "unset: milvus.db in a local storage root.")
    token: SecretStr = Field(SecretStr(""), description="Milvus token (user:password) for "
                             "servers with auth; never stored or shown (VECPRESS_MILVUS__TOKEN).")
    token_secret: str = Field("", description="Name of a Prefect Secret block holding the token: "
                              "ingest runs read it at run time, so deployments carry no token.")
    index_type: Literal["auto", "FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW"] = Field(
        "auto", description="auto: IVF_SQ8 on Milvus Lite, IVF_PQ on a server."
    )
    nprobe: int | None = Field(None, ge=1, description="IVF lists probed per search; default: "
                               "derived from the collection's size when it is indexed (enough "
                               "lists to scan 50,000 vectors and at least a tenth of the lists).")
    rescore_factor: int | None = Field(None, ge=1, description="ANN returns k × this many "
                                       "candidates for rescoring; default 16 for IVF_PQ, else 8.")
    search_consistency: Literal["Strong", "Bounded", "Session", "Eventually"] = Field(
        "Bounded", description="Milvus consistency of searches. Bounded (a few seconds stale at "
        "most) does not wait for the server's time tick; an ingest flushes before it finishes.")
    insert_batch_bytes: int = Field(8 << 20, ge=1 << 16, description="Bytes per upsert call.")
    retry_s: float = Field(90.0, ge=0, description="How long a Milvus call that failed for a "
                           "transient reason (server busy, restarting, unreachable) is retried.")
    bulk_dir: str | None = Field(None, description="Servers: a folder the Milvus server reads, for "
                                 "bulk import of a new build's first load (a path on a standalone "
                                 "server's machine, or s3://<Milvus's bucket>/<prefix>); the "
                                 "workers write Parquet files there. Default: upserts only.")
    bulk_min_rows: int = Field(50_000, ge=0, description="With milvus.bulk_dir: once a run writing "
                               "a new build has this many passages, its shards are bulk-imported "
                               "in files of at least this many rows (each import costs the server "
                               "seconds of fixed time; 1.6-1.8x faster than upserts at 50k-200k "
                               "rows, measured).")
    bulk_timeout_s: float = Field(600.0, gt=0, description="How long one bulk import may take; "
                                  "past it the run stops (upserting then could race the import), "
                                  "and the next run waits for the import before it loads.")

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://", "tcp://", "unix:"))


class DaskSettings(BaseModel):
    """Which Dask cluster runs the stages."""

    address: str | None = Field(None, description="Existing scheduler; default: a local cluster.")
    connect_timeout_s: float = Field(30.0, gt=0, description="How long to wait for an existing "
                                     "scheduler to answer before the run fails (exit code 3).")
    n_workers: int | None = Field(None, ge=1, description="Local workers (default: one per GPU, "
                                  "else min(cores, 4)).")
    threads_per_worker: int | None = Field(None, ge=1, description="Threads per local worker; "
                                           "also ONNX Runtime's intra-op threads.")
    in_process_bytes: int = Field(256 << 10, ge=0, description="A local run whose new and "
                                  "changed input is at most this many bytes runs its stages in "
                                  "threads of the flow's own process: no worker processes to "
                                  "start and import (seconds on a small machine). 0: worker "
                                  "processes for every run that reads input (a run with nothing "
                                  "to read starts none).")


class ServeSettings(BaseSettings):
    """How `vecpress serve` runs the deployments: schedule, watched folders, Prefect server.

    Separate from ``Settings`` (the flow's parameters) so that the Prefect UI's run form shows
    only what one ingest needs. Environment: ``VECPRESS_SERVE_*``.
    """

    model_config = SettingsConfigDict(env_prefix="VECPRESS_SERVE_", extra="forbid")

    sources: list[str] = Field([], description="What the scheduled ingest reads (files, folders, "
                               "globs, fsspec URLs).")
    cron: str = Field("0 2 * * *", description="Schedule of the incremental ingest (nightly 02:00).")
    timezone: str = Field("UTC", description="Time zone of the cron schedule.")
    watch: list[str] = Field([], description="Folders (watchfiles) or fsspec URLs (polled) whose "
                             "new, changed and deleted files trigger an ingest; default: sources.")
    debounce_s: float = Field(2.0, gt=0, description="Quiet time before a burst of file changes "
                              "becomes one event.")
    poll_s: float = Field(30.0, gt=0, description="Listing interval for object-store URLs.")
    host: str = Field("127.0.0.1", description="Prefect server address started by serve.")
    port: int = Field(4200, ge=1, le=65535, description="Prefect server port started by serve.")
    prefect_home: str = Field("./data/prefect", description="Prefect server database folder.")
    slot_wait_s: float = Field(5.0, gt=0, description="How often a run waiting for its "
                               "deployment's slot (one run at a time) asks again, on the Prefect "
                               "server serve starts.")

    @property
    def watched(self) -> list[str]:
        return self.watch or self.sources


class LocalServerSettings(BaseSettings):
    """The local Prefect server CLI commands share (``vecpress server``): it outlives a command,
    so the run links a command prints still open, and the next command starts in seconds.

    Separate from ``Settings`` like ``ServeSettings``: not a flow parameter. Environment:
    ``VECPRESS_SERVER_*``.
    """

    model_config = SettingsConfigDict(env_prefix="VECPRESS_SERVER_", extra="forbid")

    auto_start: bool = Field(True, description="`vecpress ingest` without PREFECT_API_URL starts "
                             "the local server on first use; false (or --no-server): a temporary "
                             "API that lives as long as the command.")
    home: str = Field("~/.vecpress/prefect-server", description="Its database, log and state.")
    port: int = Field(4477, ge=1, le=65535, description="Its stable local port (API and UI).")
    idle_stop_s: float = Field(3600.0, gt=0, description="It stops itself after this long "
                               "without a command or a running flow.")
    startup_s: float = Field(240.0, gt=0, description="How long a command waits for it to answer "
                             "(the first start migrates its database).")
    database_templates: str = Field(
        "~/.vecpress/prefect-templates", description="A migrated Prefect database per Prefect "
        "version, kept by the first server that starts on an empty one; later new servers "
        "(temporary APIs, new homes, `vecpress serve` in a new folder) start from a copy. Empty: "
        "every new server migrates its own.")

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def templates_path(self) -> Path | None:
        return Path(self.database_templates).expanduser().resolve() if self.database_templates \
            else None


class Settings(BaseSettings):
    """Everything one ingest or search needs. CLI flags and Prefect parameters fill it."""

    model_config = SettingsConfigDict(
        env_prefix="VECPRESS_", env_nested_delimiter="__", extra="forbid"
    )

    collection: str = Field("vecpress", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,254}$",
                            description="Milvus collection name.")
    storage_root: str = Field("./data", description="Run artifacts, codecs, archives, model cache: "
                              "a local folder or an object-store URL (s3://bucket/prefix).")
    storage_options: dict[str, Any] = Field(
        {}, description="fsspec options of the storage root's file system, e.g. s3fs's "
        "{\"endpoint_url\": \"http://minio:9000\"}; default: the usual AWS variables and files. "
        "Credentials given here are masked in every dump and left out of deployments: prefer the "
        "environment (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) of every host.", repr=False)
    inputs: InputSettings = InputSettings()
    metadata: MetadataSettings = MetadataSettings()
    chunk: ChunkSettings = ChunkSettings()
    model: ModelSettings = ModelSettings()
    codec: CodecSettings = CodecSettings()
    milvus: MilvusSettings = MilvusSettings()
    dask: DaskSettings = DaskSettings()
    search: SearchSettings = SearchSettings()
    prefect_startup_s: float = Field(240.0, gt=0, description="How long a CLI run waits for its "
                                     "temporary Prefect API to answer (without PREFECT_API_URL); "
                                     "a busy machine may need minutes for the database migrations.")
    lease_ttl_s: float = Field(60.0, ge=2, description="Object-store roots: an ingest's lease on "
                               "the collection (one run at a time, across hosts) is renewed "
                               "every quarter of this; a run not heard from for this long (killed, "
                               "host lost) is taken over by the next run in the queue.")
    gc_grace_s: float = Field(3600.0, ge=0, description="Shards, archives and retired Milvus "
                              "collections no build needs any more are deleted this long after "
                              "they were superseded (searches that started before keep working).")

    @field_serializer("storage_options", when_used="json")
    def _mask_credentials(self, options: dict[str, Any]) -> dict[str, Any]:
        return masked(options)

    @model_validator(mode="after")
    def _absolute_local_paths(self) -> Settings:
        """The workers of an existing Dask cluster (``dask.address``) run in their own folder: a
        relative local root or model cache means where the command was given, so it is made
        absolute here, before any stage sees it."""
        if "://" not in self.storage_root:
            self.storage_root = str(Path(self.storage_root).expanduser().absolute())
            if "uri" not in self.milvus.model_fields_set:
                # Milvus Lite's file follows a local root, as the model cache does (it stayed in
                # ./data of the working folder). Still unset: a collection's own file wins.
                self.milvus = MilvusSettings.model_construct(
                    self.milvus.model_fields_set, **(dict(self.milvus) | {
                        "uri": str(Path(self.storage_root) / "milvus.db")}))
        if self.model.cache_dir and "://" not in self.model.cache_dir:
            self.model = self.model.model_copy(
                update={"cache_dir": str(Path(self.model.cache_dir).expanduser().absolute())})
        return self

    @property
    def model_cache_dir(self) -> Path:
        """Exported models must be local files for ONNX Runtime, whatever the storage root is:
        under a local root, its models/ folder; under an object store, this host's cache folder
        (the export is also published to the root, ``tasks.embed.published``)."""
        if self.model.cache_dir:
            return Path(self.model.cache_dir)
        if "://" in self.storage_root and not self.storage_root.startswith("file://"):
            return Path.home() / ".cache" / "vecpress" / "models"
        return Path(self.storage_root.removeprefix("file://")) / "models"
