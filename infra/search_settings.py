"""Bounds on a search, and the settings of the HTTP server (``vecpress api``).

``SearchSettings`` is part of ``Settings`` (``search.*``, ``VECPRESS_SEARCH__*``): it bounds every
search, from the Python API, the CLI and HTTP alike, before any work starts. ``ApiSettings`` is
the HTTP server's own (``VECPRESS_API_*``), separate like ``ServeSettings``: the Prefect UI's run
form has no use for it. Besides ``infra.settings``, this is the only module that reads the
environment.

The defaults keep one request well under 1 GB whatever it asks: 256 queries of at most 16 KiB,
at most 4,096 hits (each a passage of at most 64 KiB, most far smaller), at most 65,536 Milvus
candidates per call (a key and a distance each).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class SearchSettings(BaseModel):
    """Bounds on one search (a call of ``Collection.search``, one HTTP request)."""

    max_queries: int = Field(256, ge=1, description="Query texts in one search; `vecpress search "
                             "--queries` sends a larger file in batches of this many.")
    max_query_bytes: int = Field(16_384, ge=64, description="UTF-8 bytes of one query text. The "
                                 "model reads only its first window of tokens (~2 KB of prose) "
                                 "anyway; a longer text only costs tokenizer time.")
    max_hits: int = Field(4096, ge=1, description="Queries × k of one search: the results "
                          "returned, each with its passage's text.")
    max_candidates: int = Field(65_536, ge=16, description="Candidates (k × rescore factor per "
                                "query) Milvus returns per search call: a larger search is sent "
                                "in several calls, and one query's are capped at this.")
    max_query_file_bytes: int = Field(64 << 20, ge=1, description="Bytes of a `vecpress search "
                                      "--queries` file, which is read whole before any search "
                                      "(64 MiB: ~100k queries of 600 bytes); split a larger one.")
    max_filter_bytes: int = Field(4096, ge=16, description="UTF-8 bytes of one search's filter "
                                  "expression.")
    filter_exact_rows: int = Field(16_384, ge=0, le=16_384, description="A filter that keeps at "
                                   "most this many rows is searched exactly over all of them (no "
                                   "ANN recall lost); one that keeps more searches the index with "
                                   "its probes widened by 1 / selectivity. At most 16,384: "
                                   "Milvus's query window.")
    post_filter_share: float | None = Field(None, gt=0, le=1.01, description="A filter over "
                                            "filter_exact_rows that keeps at least this share "
                                            "of the rows is applied after an unfiltered ANN "
                                            "search of 1.5 / share times the candidates (then "
                                            "rescored), not inside it: Milvus 2.3's IVF_PQ ranks "
                                            "filtered searches poorly (recall@10 0.39 at 50%). "
                                            "Unset: 0.1 on a server, never on Milvus Lite (its "
                                            "filtered search keeps its recall). Over 1: never.")
    filter_count_ttl_s: float = Field(300.0, ge=0, description="How long the count of a filter "
                                      "that keeps more than filter_exact_rows rows is reused "
                                      "(it only widens the probes; Milvus Lite takes seconds to "
                                      "count 25k matches). 0: count every time.")
    filter_counts: int = Field(1024, ge=0, description="Filters whose counts are kept (LRU, "
                               "each at most max_filter_bytes).")
    milvus_wait_s: float = Field(10.0, ge=0, description="How long a search waits for a Milvus "
                                 "that does not answer (a server down or restarting, a Lite file "
                                 "another process holds) before it fails (exit 3); ingests wait "
                                 "milvus.retry_s.")
    query_cache_size: int = Field(10_000, ge=0, description="Query embeddings kept (LRU, ~1.6 KB "
                                  "each at 384 dims) so a repeated query skips the model; emptied "
                                  "when the serving build changes. 0: no cache.")


class ApiSettings(BaseSettings):
    """How ``vecpress api`` serves: address, keys, and the bounds on work in flight.

    Environment: ``VECPRESS_API_*`` (``VECPRESS_API_KEYS=key1,key2`` for keys).
    """

    model_config = SettingsConfigDict(env_prefix="VECPRESS_API_", extra="forbid")

    host: str = Field("127.0.0.1", description="Address to listen on; another than localhost "
                      "needs API keys (or --insecure).")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")
    keys: Annotated[list[SecretStr], NoDecode] = Field(
        [], description="API keys (comma-separated in VECPRESS_API_KEYS) a client sends as "
        "`Authorization: Bearer KEY` or `X-API-Key: KEY`; never logged or shown.")
    key_file: str | None = Field(None, description="A file of API keys, one per line (# comments).")
    key_secret: str | None = Field(None, description="Name of a Prefect Secret block holding the "
                                   "API keys (one per line, or a JSON list).")
    insecure: bool = Field(False, description="Serve without keys on a non-local address.")
    max_payload_bytes: int = Field(2 << 20, ge=1024, description="Bytes of one request body; "
                                   "larger ones get 413 before they are read whole.")
    max_body_bytes_in_flight: int = Field(16 << 20, ge=1024, description="Bytes of request "
                                          "bodies being read or searched at once (parsed, a body "
                                          "takes up to ~12× its bytes); past it, 503.")
    body_timeout_s: float = Field(10.0, gt=0, description="Time to receive a request's body; "
                                  "past it, 408 (a slow client holds no budget for long).")
    max_connections: int = Field(256, ge=1, description="Open connections; past it, 503 "
                                 "(uvicorn's limit_concurrency).")
    concurrency: int = Field(2, ge=1, description="Batches of queries embedded and searched at "
                             "once (threads; ONNX Runtime, the tokenizer and Milvus calls release "
                             "the GIL).")
    max_batch_queries: int = Field(16, ge=1, description="Queries of concurrent requests embedded "
                                   "and searched together (fp32 MiniLM on 2 cores: 6.6 ms a query "
                                   "in batches of 8, 13.5 in batches of 64).")
    batch_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits for more requests "
                                 "when every thread is busy; an idle server starts at once.")
    max_queued_hits: int = Field(32_768, ge=1, description="Hits (queries × k) of the requests "
                                 "accepted and not yet answered; past it a request gets 503 with "
                                 "Retry-After. Bounds the server's memory.")
    timeout_s: float = Field(10.0, gt=0, description="Deadline of one request: past it, 504, and "
                             "its queries are dropped if not yet started.")
    shutdown_s: int = Field(5, ge=0, description="On SIGTERM, how long requests in flight may "
                              "finish before they are cancelled (the process exits within ~2× "
                              "this).")

    @field_validator("keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value


def check_consistent(api: ApiSettings, search: SearchSettings) -> None:
    """Refuse bounds that would turn every large request away for ever (a 503 a client retries)."""
    largest = search.max_hits + search.max_queries  # what the largest allowed search costs
    if api.max_queued_hits < largest:
        raise ValueError(f"api.max_queued_hits ({api.max_queued_hits:,}) is below what the "
                         f"largest allowed search holds (search.max_hits + search.max_queries = "
                         f"{largest:,}); raise it or lower those")
    if api.max_body_bytes_in_flight < api.max_payload_bytes:
        raise ValueError(f"api.max_body_bytes_in_flight ({api.max_body_bytes_in_flight:,}) is "
                         f"below api.max_payload_bytes ({api.max_payload_bytes:,})")
