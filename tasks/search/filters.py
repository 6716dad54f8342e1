"""Filtered search: a Milvus boolean expression over a passage's fields and its metadata.

Users write metadata keys as plain names (``team == "t7" and year >= 2020``); Milvus keeps them
in the collection's JSON field, so each name that is not a passage field, a typed metadata field
(``metadata.fields``), a keyword or a function is rewritten to ``metadata["name"]``. How a filter
is searched depends on how much of the collection it keeps (``plan``):

- few matching rows (at most ``search.filter_exact_rows``): their archived vectors are scored
  exactly, all of them: no ANN recall is lost however selective the filter;
- otherwise an ANN search with the filter, its IVF probes widened by 1 / selectivity (a filter
  that keeps 10% of the rows finds about a tenth of its candidates in each probed list); its
  count is remembered for ``search.filter_count_ttl_s`` (``filter_counts``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from vecpress.infra.milvus_reads import MilvusReads, milvus_errors
from vecpress.tasks.search.filter_counts import FilterCounts
from vecpress.tasks.similarity import distances, scores

FIELDS = frozenset({"pk", "doc_id", "chunk", "text", "source", "codec_id"})
METADATA = "metadata"
QUERY_WINDOW = 16_384  # rows one Milvus query returns at most
# Milvus's expression words (matched without regard to case), written as they are.
WORDS = frozenset({"and", "or", "not", "in", "like", "true", "false", "is", "null", "exists"})
_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<number>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"""
    r"""|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|(?P<other>\s+|.)""", re.S)


class FilterError(ValueError):
    """A filter that cannot be searched: where it is wrong, and what the collection offers."""


@dataclass(frozen=True)
class Filter:
    """A user's filter and the Milvus expression it became."""

    text: str
    expression: str
    metadata_keys: tuple[str, ...]  # the names that became metadata["..."]


def translate(text: str, has_metadata: bool, max_bytes: int,
              typed: frozenset[str] = frozenset()) -> Filter | None:
    """``text`` as a Milvus expression (None for no filter); ``FilterError`` for an unclosed
    string or parenthesis, a filter over ``search.max_filter_bytes``, or metadata keys in a
    collection built before metadata was kept. Names in ``typed`` (the collection's typed
    metadata fields) stay as they are: Milvus evaluates them on their own columns."""
    if not text or not text.strip():
        return None
    if len(text.encode()) > max_bytes:
        raise FilterError(f"the filter is {len(text.encode()):,} bytes, over the "
                          f"{max_bytes:,} of search.max_filter_bytes (VECPRESS_SEARCH__MAX_FILTER_"
                          "BYTES)")
    out: list[str] = []
    keys: list[str] = []
    opened: list[int] = []
    tokens = list(_TOKEN.finditer(text))
    at = 0
    while at < len(tokens):
        match = tokens[at]
        token, kind = match.group(), match.lastgroup
        at += 1
        if kind == "name" and token not in typed and not _kept(token, text, match.end()):
            keys.append(token)
            token = f'{METADATA}["{token}"]'
            membership = _membership(tokens, at)
            if membership is not None:
                negated, values, at = membership
                token = ("not " if negated else "") + "(" + " or ".join(
                    f"{token} == {value}" for value in values) + ")"
        elif kind == "other" and token in "\"'":
            raise FilterError(f"unclosed string at position {match.start() + 1} of the filter "
                              f"{text!r}: close it with {token}")
        elif token == "(":
            opened.append(match.start())
        elif token == ")":
            if not opened:
                raise FilterError(f"')' at position {match.start() + 1} of the filter {text!r} "
                                  "closes nothing")
            opened.pop()
        out.append(token)
    if opened:
        raise FilterError(f"'(' at position {opened[-1] + 1} of the filter {text!r} is not closed")
    if keys and not has_metadata:
        raise FilterError(
            f"the filter names {', '.join(sorted(set(keys)))}, but this collection was built "
            f"before vecpress kept metadata: it can filter on {', '.join(sorted(FIELDS))}; run "
            "vecpress ingest --recreate to keep the records' other fields as metadata")
    return Filter(text, "".join(out), tuple(dict.fromkeys(keys)))


def bare_names(text: str) -> set[str]:
    """The names a filter writes outside its strings: fields, keys, keywords and functions."""
    return {token for kind, token in words(text) if kind == "name"}


def words(text: str) -> list[tuple[str, str]]:
    """A filter's tokens other than spaces, as (kind, token): kind is string (quotes kept),
    number (unsigned), name or other (one character: an operator's, a bracket)."""
    return [(m.lastgroup or "other", m.group()) for m in _TOKEN.finditer(text)
            if not m.group().isspace()]


def _membership(tokens: list[re.Match[str]], at: int) -> tuple[bool, list[str], int] | None:
    """``[not] in [v, ...]`` after a metadata key, as (negated, the values, where it ends).
    Milvus Lite takes ``in`` on a field only (``metadata["team"] in [...]`` is refused there), so
    a key's membership becomes equalities joined by ``or``, which both backends take. Anything
    but a list of literals is left to Milvus as written."""
    words = [(i, m) for i, m in enumerate(tokens[at:], start=at) if not m.group().isspace()]
    negated = bool(words) and words[0][1].group().lower() == "not"
    words = words[1:] if negated else words
    if len(words) < 3 or words[0][1].group().lower() != "in" or words[1][1].group() != "[":
        return None
    values: list[str] = []
    sign = ""
    for index, match in words[2:]:
        token, kind = match.group(), match.lastgroup
        if token == "]":
            return (negated, values, index + 1) if values and not sign else None
        if token == "-" and not sign:
            sign = "-"
        elif kind == "number" or (not sign and (kind == "string"
                                                or token.lower() in ("true", "false"))):
            values.append(sign + token)
            sign = ""
        elif token != "," or sign:
            return None
    return None


def _kept(name: str, text: str, end: int) -> bool:
    """A name left as it is: a passage field, the metadata field, a keyword or a function."""
    return (name in FIELDS or name == METADATA or name.lower() in WORDS
            or text[end:].lstrip().startswith("("))


@dataclass(frozen=True)
class FilterPlan:
    """How one filter is searched: ``exact_pks`` (every matching row, scored exactly) or an ANN
    search probing ``nprobe`` lists; ``share``: the rows it keeps, when counted (0: not)."""

    matches: int
    exact_pks: np.ndarray | None
    nprobe: int
    share: float = 0.0


def plan(store: MilvusReads, collection: str, wanted: Filter, nprobe: int, exact_rows: int,
         known: set[str] | None = None, counts: FilterCounts | None = None) -> FilterPlan:
    """How to search ``wanted``. Metadata keys no passage has are a ``FilterError`` (a typo would
    match nothing, silently); ``known`` remembers the keys found, so each is asked about once.

    A large filter ``counts`` remembers goes to the index at once. Otherwise the matching keys
    are fetched, up to ``exact_rows`` + 1 (one query, within Milvus's 16,384-row window): all of
    them are scored exactly when that is all there are; only a filter that keeps more is counted
    (and remembered), to widen the probes. A malformed expression fails in the first query, said
    as a ``FilterError``."""
    check_keys(store, collection, wanted, set() if known is None else known)
    cached = counts.get(collection, wanted.expression) if counts is not None else None
    if cached is not None:
        return FilterPlan(cached[0], None, widened_nprobe(nprobe, *cached), _share(*cached))
    window = min(exact_rows + 1, QUERY_WINDOW)
    try:
        pks = store.pks_where(collection, wanted.expression, window) if exact_rows else None
        if pks is not None and len(pks) < window:
            return FilterPlan(len(pks), pks if len(pks) else None, nprobe)
        matches = store.count_matching(collection, wanted.expression)
    except milvus_errors() as exc:
        reason = getattr(exc, "message", None) or str(exc)
        raise FilterError(f"the filter {wanted.text!r} is not a valid expression: {reason} (write "
                          'e.g. team == "t7" and year >= 2020; names other than '
                          f"{', '.join(sorted(FIELDS))} are metadata keys)") from exc
    if pks is not None and 0 < matches <= min(exact_rows, len(pks)):  # exactly a full window
        return FilterPlan(matches, pks, nprobe)
    rows = store.count_matching(collection, "")
    if counts is not None:
        counts.put(collection, wanted.expression, matches, rows)
    return FilterPlan(matches, None, widened_nprobe(nprobe, matches, rows), _share(matches, rows))


def _share(matches: int, rows: int) -> float:
    return matches / rows if rows > 0 else 0.0


def post_filter_limit(limit: int, share: float, at_least: float, at_most: int) -> int | None:
    """Candidates of an unfiltered search that hold ``limit`` matches of a filter keeping
    ``share`` of the rows (1.5 × ``limit`` / share: the expected matches with a margin), or None
    when the filter keeps less than ``at_least`` or they would be more than ``at_most``.

    Why: Milvus 2.3.5's IVF_PQ ranks a filtered search poorly (50% selectivity: 43% of the true
    top 10 among 160 candidates, 94% among 6,000; unfiltered: 96% among 160), while an unfiltered
    search's candidates hold the filter's best rows in proportion to its share."""
    if share < at_least or share <= 0:
        return None
    wanted = math.ceil(1.5 * limit / share)
    return wanted if wanted <= at_most else None


def check_keys(store: MilvusReads, collection: str, wanted: Filter, known: set[str]) -> None:
    """``FilterError`` naming the first metadata key of ``wanted`` that no passage has, where it
    is in the filter, and keys the collection does have."""
    for key in wanted.metadata_keys:
        if key in known:
            continue
        try:
            found = len(store.pks_where(collection, f'exists {METADATA}["{key}"]', 1)) > 0
        except milvus_errors():  # a Milvus without EXISTS: the filter itself is checked next
            return
        if found:
            known.add(key)
            continue
        position = re.search(rf"\b{re.escape(key)}\b", wanted.text)
        where = f" at position {position.start() + 1}" if position else ""
        value = position and re.search(r"(==?|!=|<=?|>=?|\bin)\s*$",
                                       wanted.text[:position.start()])
        quote = f" (a value is quoted: \"{key}\"; equality is ==)" if value else ""
        keys = store.metadata_keys(collection) | set(store.typed_fields(collection))
        raise FilterError(f"no passage has the metadata key '{key}'{where} of the filter "
                          f"{wanted.text!r}{quote}; keys of this collection (its typed fields "
                          f"and those of ~1,000 passages): {', '.join(sorted(keys)) or 'none'} "
                          f"(and the passage fields {', '.join(sorted(FIELDS))})")


def widened_nprobe(nprobe: int, matches: int, rows: int) -> int:
    """The ``nprobe`` of a filter keeping ``matches`` of ``rows``: ``nprobe`` / selectivity, at
    most Milvus's 65,536. Not capped at the build's nlist: an index may have more lists than its
    plan says (Milvus Lite's always has 128: an IVF_SQ8 of 863 rows planned with nlist 22
    returned 2 of a filter's 7 matching rows at nprobe 22, 4 at 64 and all 7 at 256), and
    Milvus caps nprobe at the lists there are."""
    if rows <= 0 or matches >= rows:
        return nprobe
    return max(nprobe, min(math.ceil(nprobe * rows / max(matches, 1)), 65_536))


def top_k(pks: np.ndarray, distances: np.ndarray, k: int, similarity: str = "cosine",
          offset: float = 0.0) -> list[tuple[int, float]]:
    """(pk, the model's similarity) of the ``k`` smallest distances (``tasks.similarity``: squared
    L2, or a negated inner product), best first. Ties (the same text stored twice has the same
    vector) go by pk, not by the order Milvus returned them in, which differs between a batched
    and a single search."""
    order = np.lexsort((pks, distances))[:k]
    found = scores(distances[order], similarity, offset)
    return [(int(pks[i]), float(score)) for i, score in zip(order, found, strict=True)]


def exact_rank(query: np.ndarray, pks: np.ndarray, vectors: np.ndarray, k: int,
               similarity: str = "cosine", offset: float = 0.0) -> list[tuple[int, float]]:
    """(pk, similarity) of the ``k`` nearest of ``vectors``, ties by pk."""
    return top_k(pks, distances(vectors, query, similarity), k, similarity, offset)
