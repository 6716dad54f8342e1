"""The one settings object that flows from the CLI / Prefect UI parameters to every stage.

Only this module (and ``infra.search_settings``, with the HTTP server's own ``ApiSettings``) reads
the environment (``VECPRESS_*`` variables, nested with ``__``, e.g. ``VECPRESS_MILVUS__URI``); every
other module receives a ``Settings`` (or one of its parts). The model's and the codec's parts live
in ``model_settings`` and ``codec_settings`` and are imported here, as every part is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_serializer, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vecpress.infra.codec_settings import CodecSettings
from vecpress.infra.metadata_settings import MetadataSettings
from vecpress.infra.model_settings import ModelSettings
from vecpress.infra.search_settings import SearchSettings

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
    max_eval_queries: int = Field(10_000, ge=1, description="Most held-out queries an "
                                  "--eval-queries file may hold (read before the run; the exact "
                                  "truth scores each against every passage of a shard): a random "
                                  "sample of this many measures recall@10 as well.")


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
