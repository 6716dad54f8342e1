"""``vecpress search``: ANN over a collection's compressed vectors, rescored with archived ones.

Exit codes: 0 ok; 2 a usage or configuration error (a bad flag or query, a storage root, model
cache or Milvus URI other than the ingest's); 3 Milvus unavailable or failing (also a Milvus Lite
file held by a running ingest).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from vecpress.cli.common import (
    Collection,
    MilvusUri,
    StorageRoot,
    console,
    print_hits,
    quiet_libraries,
    settings_from_flags,
)

if TYPE_CHECKING:
    from vecpress.infra.settings import Settings
    from vecpress.tasks.search.searcher import Hit, Searcher

# Milvus returns at most 16,384 candidates per query (its topk limit) and search asks it for
# k × milvus.rescore_factor of them: 1024 keeps the full short list up to a factor of 16 (8 by
# default); past that the candidates are capped at 16,384 and rescoring sees fewer per result.
MAX_K = 1024
BATCH = 256  # queries embedded and searched together
K_HELP = (f"Results per query, 1 to {MAX_K}: Milvus returns at most 16,384 candidates, and each "
          "result is rescored from milvus.rescore_factor of them (8 by default).")


def _check_k(k: int) -> int:
    """-k in 1..MAX_K, with a message that names the range (typer's own does not)."""
    if not 1 <= k <= MAX_K:
        raise typer.BadParameter(f"{k} is outside the range 1 to {MAX_K}; give 1 to {MAX_K} "
                                 "results per query")
    return k


def search(
    query: Annotated[str | None, typer.Argument(help="Query text.")] = None,
    collection: Collection = "vecpress",
    k: Annotated[int, typer.Option("-k", callback=_check_k, help=K_HELP)] = 10,
    queries: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, readable=True,
        help="JSONL of {id,text} queries, one per line.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per query.")] = False,
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
) -> None:
    """Search a collection: ANN over compressed vectors, rescored with archived vectors.

    Exit codes: 0 ok, 2 usage or configuration error, 3 Milvus unavailable or in use.
    """
    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a QUERY or --queries FILE")
    items = _one_query(query) if query is not None else _read_queries(queries)
    quiet_libraries()
    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
                                      "storage_root": storage_root})
    searcher = _open(settings)
    try:
        _search_all(searcher, items, k, as_json)
    except Exception as exc:
        _fail_if_milvus(exc, settings)
        raise
    finally:
        searcher.store.close()
        searcher.embedder.close()


def _one_query(query: str) -> list[tuple[str, str]]:
    """The QUERY argument as the one query; an empty one is a usage error, not a search."""
    if not query.strip():
        raise typer.BadParameter("the query is empty; give the text to search for",
                                 param_hint="'QUERY'")
    return [("query", query)]


def _read_queries(path: Path) -> list[tuple[str, str]]:
    """(id, text) of each query line; any bad line is a usage error naming FILE:LINE."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{path}: invalid UTF-8 at byte {exc.start}; re-encode the file "
                                 "as UTF-8", param_hint="'--queries'") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            items.append(_query_line(path, number, line))
    if not items:
        raise typer.BadParameter(f"{path} holds no queries; write one {{\"id\", \"text\"}} JSON "
                                 "object per line", param_hint="'--queries'")
    return items


def _query_line(path: Path, number: int, line: str) -> tuple[str, str]:
    """One query line as (id, text). A bad one stops the command before any search: skipping it
    would silently leave a query without its result line."""
    where = f"{path}:{number}"
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{where}: malformed JSON ({exc.msg}, column {exc.colno}); "
                                 "expected {\"id\": ..., \"text\": ...}",
                                 param_hint="'--queries'") from exc
    text = obj.get("text") if isinstance(obj, dict) else None
    if not isinstance(text, str):
        raise typer.BadParameter(f"{where}: expected {{\"id\": ..., \"text\": \"...\"}} with the "
                                 "query text as a string", param_hint="'--queries'")
    qid = str(obj.get("id", number))
    if not text.strip():
        raise typer.BadParameter(f"{where}: query '{qid}' is empty; give it text or remove the "
                                 "line", param_hint="'--queries'")
    return qid, text


def _open(settings: Settings) -> Searcher:
    """The collection's searcher; every way of not finding or reaching it is one line and an
    exit code (2: fix a flag or setting, 3: Milvus is busy or down)."""
    from vecpress.tasks.collection.builds import LegacyCollectionError
    from vecpress.tasks.search.searcher import (
        CollectionNotFoundError,
        ModelNotFoundError,
        open_searcher,
    )

    _quiet_milvus_logs()
    if settings.milvus.is_lite and _lite_in_use(settings.milvus.uri):
        _exit(3, f"the Milvus Lite file {settings.milvus.uri} is in use by another process (an "
                 "ingest?); search again when it finishes, or serve the collection from a Milvus "
                 "server")
    try:
        return open_searcher(settings)
    except (CollectionNotFoundError, ModelNotFoundError, LegacyCollectionError) as exc:
        _exit(2, str(exc))
    except Exception as exc:
        _fail_if_milvus(exc, settings)
        raise


def _quiet_milvus_logs() -> None:
    """pymilvus and the Milvus Lite server log a traceback for each failed call; the failure
    reaches this command, which reports it in one line (exit 3), so their logs would only bury it."""
    for name in ("pymilvus", "pymilvus.milvus_client", "milvus_lite"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _lite_in_use(uri: str) -> bool:
    """True when another process holds the lock of the Milvus Lite data directory ``uri``.

    Milvus Lite allows one process per file; opening a held one fails in a way pymilvus reports
    as a connection error, which would be retried for 90 s. Asked first, it is one clear line.
    """
    lock = Path(uri).expanduser() / "LOCK"
    try:
        import fcntl
    except ImportError:  # Windows: Milvus Lite's own (slower) error is reported instead
        return False
    if not lock.is_file():
        return False
    with lock.open("rb") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _fail_if_milvus(exc: Exception, settings: Settings) -> None:
    """Exit 3 with one line for a pymilvus error; other exceptions are left to the caller."""
    from pymilvus import MilvusException

    if isinstance(exc, MilvusException):
        reason = getattr(exc, "message", "") or "no reason given"
        _exit(3, f"Milvus at {settings.milvus.uri} failed: {reason} (code {exc.code}); check that "
                 "it is up and holds the collection the ingest wrote (same --milvus-uri)")


def _exit(code: int, message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _search_all(searcher: Searcher, items: list[tuple[str, str]], k: int, as_json: bool) -> None:
    """Search in batches, printing results on stdout and notices (short or cut queries) on stderr."""
    out = Console()
    notes = _Notices(searcher, k)
    for start in range(0, len(items), BATCH):
        batch = items[start : start + BATCH]
        truncated_before = searcher.embedder.truncated
        results = searcher.search([t for _, t in batch], k)
        if searcher.embedder.truncated > truncated_before:
            notes.truncated(batch)
        for (qid, text), hits in zip(batch, results, strict=True):
            notes.short(qid, len(hits))
            if as_json:
                sys.stdout.write(json.dumps({"id": qid, "results": _json_hits(hits)}) + "\n")
            else:
                print_hits(out, text, hits)


def _json_hits(hits: list[Hit]) -> list[dict]:
    return [{"rank": r, "doc_id": h.doc_id, "chunk": h.chunk, "pk": h.pk,
             "score": round(h.score, 6)} for r, h in enumerate(hits, 1)]


class _Notices:
    """One-line notes on stderr about results that are not what the user may think they are;
    stdout (JSON lines, say) stays results only."""

    def __init__(self, searcher: Searcher, k: int) -> None:
        self.searcher, self.k = searcher, k
        self._size: int | None = None
        self._said_size = False

    def short(self, qid: str, found: int) -> None:
        """Fewer than k results: say why once when the collection is smaller than k, else per
        query (the index found fewer candidates than asked)."""
        if found >= self.k:
            return
        if self._size is None:
            self._size = self.searcher.store.count(self.searcher.collection)
        if self._size < self.k:
            if not self._said_size:
                self._said_size = True
                _note(f"only {self._size} of {self.k} results: the collection has "
                      f"{self._size} passages")
            return
        _note(f"query '{qid}': only {found} of {self.k} results (the index found fewer "
              "candidates; a larger VECPRESS_MILVUS__NPROBE searches more of it)")

    def truncated(self, batch: list[tuple[str, str]]) -> None:
        """Name each query longer than the model's window: only its start was searched."""
        window = self.searcher.embedder.artifact.max_seq_length
        for qid, tokens in zip((q for q, _ in batch), self._token_counts(batch), strict=True):
            if tokens > window:
                _note(f"query '{qid}' has {tokens} tokens; it was truncated to {window} tokens "
                      "(the model's window), so only its start was searched")

    def _token_counts(self, batch: list[tuple[str, str]]) -> list[int]:
        """Tokens of each query with the model's special tokens, as the embedder counts them."""
        from vecpress.tasks.embed.tokenising import bare_tokenizer, model_tokenizer

        artifact = self.searcher.embedder.artifact
        tok = bare_tokenizer(model_tokenizer(artifact.model_dir, artifact.max_seq_length))
        return [len(e.ids) for e in tok.encode_batch([t for _, t in batch])]


def _note(message: str) -> None:
    console.print(f"note: {escape(message)}", highlight=False, soft_wrap=True)
