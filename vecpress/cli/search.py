"""``vecpress search``: ANN over a collection's compressed vectors, rescored with archived ones.

Exit codes: 0 ok; 2 a usage or configuration error (a bad flag or query, a storage root, model
cache or Milvus URI other than the ingest's); 3 Milvus unavailable or failing (also a Milvus Lite
file held by a running ingest).
"""

from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from vecpress.cli.common import (
    Collection,
    MilvusUri,
    StorageRoot,
    console,
    exit_with,
    fail_if_milvus,
    open_for_search,
    print_hits,
    quiet_libraries,
    settings_from_flags,
)
from vecpress.infra.bounds import MAX_K, MILVUS_TOPK

if TYPE_CHECKING:
    from vecpress.api import Collection as OpenCollection
    from vecpress.tasks.search.searcher import Hit

K_HELP = (f"Results per query, 1 to {MAX_K}: Milvus returns at most {MILVUS_TOPK:,} candidates, and each "
          "result is rescored from milvus.rescore_factor of them (8; 16 on IVF_PQ).")


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
    filter: Annotated[str | None, typer.Option(
        "--filter", help='Only passages that match this Milvus expression over metadata keys and '
        'passage fields, e.g. \'team == "t7" and year >= 2020\'.')] = None,
    show_metadata: Annotated[bool, typer.Option(
        "--show-metadata", help="Add each hit's metadata to the table (--json always has it).")
    ] = False,
    milvus_uri: MilvusUri = None,
    storage_root: StorageRoot = None,
) -> None:
    """Search a collection: ANN over compressed vectors, rescored with archived vectors.

    Exit codes: 0 ok, 2 usage or configuration error, 3 Milvus unavailable or in use.
    """
    if (query is None) == (queries is None):
        raise typer.BadParameter("give either a QUERY or --queries FILE")
    quiet_libraries()
    _pyarrow_without_pandas()
    settings = settings_from_flags(**{"collection": collection, "milvus.uri": milvus_uri,
                                      "storage_root": storage_root})
    # Read once the settings are known: a queries file is bounded by one of them.
    items = _read_queries(queries, settings.search.max_query_file_bytes) if queries is not None \
        else _one_query(query or "")
    _check_lengths(items, settings.search.max_query_bytes)
    opened = open_for_search(settings)
    from vecpress.tasks.search.filters import FilterError

    try:
        _search_all(opened, items, k, as_json, filter or "", show_metadata)
    except FilterError as exc:
        exit_with(2, str(exc))
    except Exception as exc:
        fail_if_milvus(exc, opened.settings)
        raise
    finally:
        opened.close()


class _NoPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not looked for by pyarrow in a search process")


def _pyarrow_without_pandas() -> None:
    """Let pyarrow find no pandas: a search then never imports it (0.19 s of a 1.3 s command).

    pyarrow imports pandas the first time it meets a Python object (``pa.array``, ``pa.scalar``,
    even ``import pyarrow.dataset``), only to ask whether the object is a pandas one, and its
    answer is kept for the process. No object a search passes it is. Pandas itself stays
    importable, and pyarrow's own conversions (``to_pandas``, ``from_pandas``) still import it
    when called.

    For a one-shot command only, called before its first thread: another thread importing pandas
    meanwhile would fail."""
    import pyarrow as pa

    if "pandas" in sys.modules:
        return
    finder = _NoPandas()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow looks for pandas once, here, and remembers it found none
    finally:
        sys.meta_path.remove(finder)


def _one_query(query: str) -> list[tuple[str, str]]:
    """The QUERY argument as the one query; an empty one is a usage error, not a search."""
    if not query.strip():
        raise typer.BadParameter("the query is empty; give the text to search for",
                                 param_hint="'QUERY'")
    return [("query", query)]


def _read_queries(path: Path, max_bytes: int) -> list[tuple[str, str]]:
    """(id, text) of each query line; any bad line is a usage error naming FILE:LINE. A file
    over ``max_bytes`` is refused before it is read (it is read whole)."""
    size = path.stat().st_size
    if size > max_bytes:
        raise typer.BadParameter(f"{path} has {size:,} bytes, over the {max_bytes:,} of "
                                 "search.max_query_file_bytes (VECPRESS_SEARCH__MAX_QUERY_FILE_"
                                 "BYTES); split it into smaller files", param_hint="'--queries'")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise typer.BadParameter(f"{path}: invalid UTF-8 at byte {exc.start}; re-encode the file "
                                 "as UTF-8", param_hint="'--queries'") from exc
    items = []
    first_line: dict[str, int] = {}  # id → the line that gave it first
    for number, line in enumerate(lines, start=1):
        if line.strip():
            items.append(_query_line(path, number, line))
            seen = first_line.setdefault(items[-1][0], number)
            if seen != number:
                raise typer.BadParameter(
                    f"{path}:{number}: query id '{items[-1][0]}' is also line {seen}'s; each "
                    "result line carries its query's id, so ids must be unique (a line without "
                    "an id is named by its number)", param_hint="'--queries'")
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


def _check_lengths(items: list[tuple[str, str]], max_bytes: int) -> None:
    """A query over ``search.max_query_bytes`` stops the command before any search, by its id."""
    for qid, text in items:
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise typer.BadParameter(
                f"query '{qid}' has {size:,} bytes: the limit is {max_bytes:,} (setting "
                "search.max_query_bytes, VECPRESS_SEARCH__MAX_QUERY_BYTES); the model reads only "
                "its first few hundred tokens, so give that part", param_hint="QUERY / --queries")


def _search_all(collection: OpenCollection, items: list[tuple[str, str]], k: int,
                as_json: bool, filter: str = "", show_metadata: bool = False) -> None:
    """Search in batches (as many queries as ``search.max_queries`` and ``search.max_hits``
    allow at this k), printing results on stdout and notices (short or cut queries) on stderr."""
    from vecpress.tasks.search.limits import batch_size

    out = Console()
    notes = _Notices(collection, k, filter)
    size = batch_size(k, collection.settings.search)
    for start in range(0, len(items), size):
        batch = items[start : start + size]
        results = collection.search([t for _, t in batch], k, filter=filter)
        notes.truncated(batch)
        for (qid, text), hits in zip(batch, results, strict=True):
            notes.short(qid, len(hits))
            if as_json:
                sys.stdout.write(json.dumps({"id": qid, "results": _json_hits(hits)}) + "\n")
            else:
                print_hits(out, text, hits, show_metadata)


def _json_hits(hits: list[Hit]) -> list[dict]:
    return [{"rank": r, "score": round(h.score, 6), "doc_id": h.doc_id, "chunk": h.chunk,
             "pk": h.pk, "source": h.source, "text": h.text, "metadata": h.metadata}
            for r, h in enumerate(hits, 1)]


class _Notices:
    """One-line notes on stderr about results that are not what the user may think they are;
    stdout (JSON lines, say) stays results only."""

    def __init__(self, collection: OpenCollection, k: int, filter: str = "") -> None:
        self.collection, self.k, self.filter = collection, k, filter
        self._size: int | None = None
        self._said_size = False
        self._said_hint = False

    def short(self, qid: str, found: int) -> None:
        """Fewer than k results: say why once when the collection is smaller than k, else per
        query (the index found fewer candidates than asked)."""
        if found >= self.k:
            return
        if self.filter:
            _note(f"query '{qid}': only {found} of {self.k} results match the filter")
            if not found and not self._said_hint:
                self._said_hint = True
                hint = self.collection.why_nothing_matched(self.filter)
                if hint:
                    _note(f"the filter may not say what you mean: {hint}")
            return
        if self._size is None:
            self._size = self.collection.count()
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
        window = self.collection.window
        counts = self.collection.token_counts([t for _, t in batch])
        for (qid, _), tokens in zip(batch, counts, strict=True):
            if tokens > window:
                _note(f"query '{qid}' has {tokens} tokens; it was truncated to {window} tokens "
                      "(the model's window), so only its start was searched")


def _note(message: str) -> None:
    console.print(f"note: {escape(message)}", highlight=False, soft_wrap=True)
