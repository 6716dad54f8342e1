"""What every ``vecpress`` command shares: the console, option types, settings from flags, output.

The command modules import only from here (never from each other, never from the package), so
the CLI has no import cycles and each command can be read on its own.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from vecpress.cli.interrupts import INTERRUPTED, interrupt_taken, stop_on_sigint
from vecpress.cli.lite_busy import lite_in_use, wait_for_lite_file

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from vecpress.api import Collection as OpenCollection
    from vecpress.infra.settings import LocalServerSettings, Settings
    from vecpress.tasks.report.summary import IngestSummary

console = Console(stderr=True)
M = TypeVar("M", bound="BaseModel")

Collection = Annotated[str, typer.Option("--collection", "-c", help="Milvus collection name.")]
MilvusUri = Annotated[str | None, typer.Option(help="Milvus Lite .db file or server URI "
                                                     "(default: the one the collection was built "
                                                     "on, else milvus.db in a local storage "
                                                     "root, or ./data).")]
StorageRoot = Annotated[str | None, typer.Option(help="Where runs, codecs and the model cache "
                                                         "live (default ./data).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Also print Prefect's own log "
                                                               "lines (task states).")]
TypedFields = Annotated[str | None, typer.Option(
    "--typed-fields", help="Metadata keys stored as typed, indexed Milvus fields, e.g. "
    "team:varchar,year:int64 (varchar, int64, double, bool): fast filters on them. Needs a new collection "
    "(--recreate, or reindex).")]

PartitionKey = Annotated[str | None, typer.Option(
    "--partition-key", help="A varchar or int64 typed field that is the partition key on a "
    "Milvus server (multi-tenant collections: a search filtered on it reads its partitions "
    "only). Not on Milvus Lite.")]


def typed_fields(flag: str | None) -> dict[str, str] | None:
    """The ``--typed-fields`` flag as ``metadata.fields`` (None: not given); exit 2 if malformed."""
    if flag is None:
        return None
    from vecpress.infra.metadata_settings import parse_typed_fields

    try:
        return parse_typed_fields(flag)
    except ValueError as exc:
        exit_with(2, str(exc))


def settings_from_flags(**overrides: Any) -> Settings:
    """Settings from VECPRESS_* environment variables, overridden by the given CLI flags.

    Keys are dotted paths into ``Settings`` (``"milvus.uri"``); ``None`` means "flag not given".
    """
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    from pydantic import ValidationError

    from vecpress.infra.settings import Settings  # imported here: --help needs no pydantic

    try:
        settings = Settings(**nested)
    except ValidationError as exc:
        exit_invalid(exc, "", "VECPRESS_", "__")
    if settings.storage_options:  # imported here: fsspec and pyarrow cost ~0.3 s of start-up
        from vecpress.infra import storage

        storage.configure(settings.storage_root, settings.storage_options)
    return settings


def flat_settings(model: type[M], prefix: str, env_prefix: str, **flags: Any) -> M:
    """A flat settings model (``ApiSettings``, ``LocalServerSettings``: its environment variables
    are ``env_prefix`` + the field) overridden by the given CLI flags (None: flag not given); an
    invalid value exits 2 naming the setting."""
    from pydantic import ValidationError

    try:
        return model(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        exit_invalid(exc, prefix, env_prefix, "_")


def local_server_settings(**flags: Any) -> LocalServerSettings:
    """The local Prefect server's settings (``VECPRESS_SERVER_*``), overridden by CLI flags."""
    from vecpress.infra.settings import LocalServerSettings

    return flat_settings(LocalServerSettings, "server.", "VECPRESS_SERVER_", **flags)


class _NoTracebackForUserErrors(logging.Filter):
    """Prefect logs a failed run's traceback; for errors the CLI explains itself (bad input or
    settings, a full disk) the message stays and the traceback goes. Bugs keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        from vecpress.infra.milvus_reads import is_milvus_error

        if isinstance(exc, (ValueError, LookupError, OSError)) or is_milvus_error(exc):
            record.exc_info, record.exc_text = None, None
        return True


def quiet_libraries() -> None:
    """Keep the model hub offline and Prefect's analytics off; silence chatty library loggers."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub is contacted, ever
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    for name in ("distributed", "httpx", "transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Prefect's queue workers, flushing a run's logs and events at exit: "Still processing
    # items: 3 items remaining..." is their progress, not a fault (a logger per class name).
    for name in ("APILogWorker", "EventsWorker"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("prefect.flow_runs", "prefect.task_runs", "prefect.engine"):
        logging.getLogger(name).addFilter(_NoTracebackForUserErrors())


def run_ingest(sources: list[str], settings: Settings, eval_queries: str | None,
               recreate: bool, full: bool = False, no_server: bool = False,
               verbose: bool = False) -> IngestSummary:
    """Run the ingest flow. Exit status 2: a configuration or input error; 3: infrastructure
    unavailable: the storage root (or another path the run writes) is full or not writable,
    Milvus stayed unreachable through the retries, the Prefect API or the Dask scheduler did not
    answer; nothing committed is lost and a rerun resumes.

    Without PREFECT_API_URL the flow reports to the shared local Prefect server (``vecpress
    server``), started on first use; with ``no_server`` (or ``VECPRESS_SERVER_AUTO_START=false``)
    to a temporary API of our own that lives as long as the command (not Prefect's ephemeral
    server, which times out on busy machines and outlives a killed CLI). The terminal shows the
    run's link, one line per stage and warnings; ``verbose`` adds Prefect's own lines.
    """
    from vecpress.cli import run_console
    from vecpress.flows.ingest import ingest_flow
    from vecpress.infra.local_prefect import prefect_api, without_flow_heartbeats
    from vecpress.infra.prefect_server import PrefectServerError

    run_console.configure(verbose)
    stop_on_sigint(resend=True)
    busy = wait_for_lite_file(settings, console)
    if busy:
        exit_with(3, busy)
    try:
        with prefect_api(local_server_settings(auto_start=False if no_server else None),
                         settings.prefect_startup_s), without_flow_heartbeats():
            return ingest_flow(sources=sources, settings=settings, eval_queries=eval_queries,
                               recreate=recreate, full=full)
    except KeyboardInterrupt:
        interrupt_taken()
        console.print("interrupted: every shard committed so far is kept; run the same command "
                      "again to resume")
        raise typer.Exit(INTERRUPTED) from None
    except PrefectServerError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from exc
    except (ValueError, LookupError, RuntimeError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    except OSError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(3) from exc
    except Exception as exc:
        from vecpress.infra.milvus_reads import is_milvus_error

        if not is_milvus_error(exc):
            raise
        exit_milvus_failed(exc, settings.milvus.uri, "check that the server is up and reachable, "
                           "then run the same command again: committed shards are kept")


def print_summary(summary: IngestSummary, as_json: bool) -> None:
    """Print an ingest summary: JSON on stdout, or the rendered tables."""
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
        return
    from vecpress.tasks.report.summary import render

    render(summary, Console())


def print_hits(out: Console, text: str, hits: list, show_metadata: bool = False) -> None:
    """Print one query's hits as a table (long passages cut to 160 characters), with their
    metadata as compact JSON when asked."""
    from rich.table import Table

    table = Table(title=f"query: {text}", title_justify="left")
    for col in ("#", "score", "doc id", "chunk", "text", *(["metadata"] if show_metadata else [])):
        table.add_column(col, overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        snippet = hit.text if len(hit.text) <= 160 else hit.text[:157] + "…"
        meta = [escape(json.dumps(hit.metadata, ensure_ascii=False))] if show_metadata else []
        table.add_row(str(rank), f"{hit.score:.3f}", escape(hit.doc_id), str(hit.chunk),
                      escape(snippet), *meta)
    out.print(table)


def machine() -> dict[str, Any]:
    """The facts about this machine and its libraries that a run summary is recorded with."""
    import platform

    import onnxruntime
    import pymilvus

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "onnxruntime": onnxruntime.__version__,
            "pymilvus": pymilvus.__version__}


def open_for_search(settings: Settings) -> OpenCollection:
    """The open collection; every way of not finding or reaching it is one line and an
    exit code (2: fix a flag or setting, 3: Milvus is busy or down)."""
    from vecpress.api import open_collection
    from vecpress.infra import storage
    from vecpress.tasks.collection.builds import LegacyCollectionError
    from vecpress.tasks.collection.catalog import Catalog
    from vecpress.tasks.collection.home import located
    from vecpress.tasks.search.opening import CollectionNotFoundError, ModelNotFoundError

    _quiet_milvus_logs()
    paths = storage.CollectionPaths(settings.storage_root, settings.collection)
    active = Catalog(paths.root).active()
    milvus = located(settings, active).milvus  # where it lives
    # A missing collection is said as such (below), whoever holds the Lite file meanwhile.
    if active is not None and milvus.is_lite and lite_in_use(milvus.uri):
        exit_with(3, f"the Milvus Lite file {milvus.uri} is in use by another process (an "
                 "ingest?); search again when it finishes, or serve the collection from a Milvus "
                 "server")
    try:
        return open_collection(settings=settings)
    except (CollectionNotFoundError, ModelNotFoundError, LegacyCollectionError) as exc:
        exit_with(2, str(exc))
    except Exception as exc:
        fail_if_milvus(exc, settings)
        raise


def _quiet_milvus_logs() -> None:
    """pymilvus and the Milvus Lite server log a traceback for each failed call; the failure
    reaches this command, which reports it in one line (exit 3), so their logs would only bury it."""
    for name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def fail_if_milvus(exc: Exception, settings: Settings) -> None:
    """Exit 3 with one line for a Milvus error; other exceptions are left to the caller."""
    from vecpress.infra.milvus_reads import is_milvus_error

    if is_milvus_error(exc):
        exit_milvus_failed(exc, settings.milvus.uri, "check that it is up and holds the collection "
                           "the ingest wrote (same --milvus-uri)")


def exit_milvus_failed(exc: BaseException, uri: str, then: str) -> NoReturn:
    """Exit 3 (infrastructure unavailable) with the one line every command prints when Milvus
    failed, after the store's retries: where, Milvus's own reason and code, and what to do
    ``then``, which is each command's own advice."""
    reason = (exc.message if hasattr(exc, "message") else str(exc)) or "no reason given"
    code = getattr(exc, "code", None)
    exit_with(3, f"Milvus at {uri} failed: {reason}{'' if code is None else f' (code {code})'}; {then}")


def exit_invalid(exc: ValidationError, prefix: str, env_prefix: str, nested: str) -> NoReturn:
    """Exit 2, naming each invalid setting as ``prefix`` + its path and its environment variable
    (``env_prefix`` + the path upper-cased, parts joined by ``nested``)."""
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or prefix.rstrip(".") or "settings"
        console.print(f"[red]error:[/red] setting {prefix}{where} (flag or {env_prefix}"
                      f"{where.upper().replace('.', nested)}): {error['msg']}")
    raise typer.Exit(2) from exc


def exit_with(code: int, message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)
