"""The scale benchmark's corpus: real passages of many kinds of text installed on the machine.

The kinds, in KINDS order until the pool is full: the standard library's and site-packages'
docstrings (~200k), installed packages' descriptions and summaries, BSD fortunes (corpora.py),
Python source comments, C/C++ header comments, package documentation files, /usr/share/doc, the
common licenses, English man pages, info manuals, other Python trees' docstrings and comments,
system C headers, Perl POD, then translated man pages. Exact duplicate texts are dropped (first
copy wins); ids are unique. The pool (the first ``max(--passages)`` of that stream) is shuffled
once with a fixed seed and each size takes a prefix, so every size of one invocation has the same
mix of kinds. Cached under data/bench/scale/ (git-ignored); delete it to rebuild.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import corpora
from harness import BENCH_DIR, Stopwatch
from installed_text import (
    MAX_WORDS,
    MIN_WORDS,
    Item,
    info_manuals,
    licenses,
    package_docs,
    prose,
    usr_share_doc,
)
from manuals import man_pages, perl_pod
from source_comments import c_comments, other_docstrings, other_python_roots, python_comments

SCALE = BENCH_DIR / "scale"
SEED = 0


def docstrings() -> Iterator[Item]:
    """The standard library's and site-packages' docstring paragraphs (vecpress's reader)."""
    from vecpress.tasks.inputs.corpus import docstring_paragraphs

    for doc_id, text in docstring_paragraphs(MIN_WORDS, MAX_WORDS):
        yield doc_id.removeprefix("site:").rsplit(":", 1)[0], doc_id, text


def metadata_kind(load: Callable[[], list[tuple[str, str]]]) -> Iterator[Item]:
    """A corpus of corpora.py read from installed packages' metadata (or the fortune file)."""
    for doc_id, text in load():
        if load is corpora.summaries or prose(text):  # summaries: one line, 3+ words
            yield doc_id.split("#")[0], doc_id, text


KINDS: dict[str, Callable[[], Iterator[Item]]] = {
    "docstrings": docstrings,
    "package_descriptions": lambda: metadata_kind(corpora.descriptions),
    "package_summaries": lambda: metadata_kind(corpora.summaries),
    "fortunes": lambda: metadata_kind(corpora.fortunes),
    "python_comments": python_comments,
    "c_comments": c_comments,
    "package_docs": package_docs,
    "usr_share_doc": usr_share_doc,
    "common_licenses": licenses,
    "man_pages_en": lambda: man_pages(True),
    "info_manuals": info_manuals,
    "other_python_docstrings": other_docstrings,
    "other_python_comments": lambda: python_comments(other_python_roots),
    "system_c_comments": lambda: c_comments([Path("/usr/include")]),
    "perl_pod": perl_pod,
    "man_pages_translated": lambda: man_pages(False),
}


def build_pool(size: int) -> Path:
    """The first ``size`` distinct real passages of the KINDS stream, as JSONL (cached)."""
    path = SCALE / f"pool-{size}.jsonl"
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        return path
    SCALE.mkdir(parents=True, exist_ok=True)
    clock = Stopwatch()
    seen_texts: set[bytes] = set()
    seen_ids: set[str] = set()
    kinds: dict[str, dict] = {}
    count = 0
    with path.with_suffix(".tmp").open("w", encoding="utf-8") as fh:
        for kind, make in KINDS.items():
            sources: set[str] = set()
            taken = duplicates = 0
            kind_clock = Stopwatch()
            for source, local_id, text in make():
                digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
                if digest in seen_texts:
                    duplicates += 1
                    continue
                seen_texts.add(digest)
                doc_id = f"{kind}:{local_id}"
                suffix = 1
                while doc_id in seen_ids:
                    doc_id, suffix = f"{kind}:{local_id}~{suffix}", suffix + 1
                seen_ids.add(doc_id)
                sources.add(source)
                fh.write(json.dumps({"id": doc_id, "text": text, "kind": kind, "source": source}) + "\n")
                taken += 1
                count += 1
                if count >= size:
                    break
            kinds[kind] = {"passages": taken, "distinct_sources": len(sources),
                           "exact_duplicates_dropped": duplicates,
                           "seconds": round(kind_clock.seconds, 1)}
            print(f"corpus: {kind}: {taken:,} passages from {len(sources):,} sources "
                  f"({count:,}/{size:,})", flush=True)
            if count >= size:
                break
    if count < size:
        raise SystemExit(f"only {count:,} distinct real passages on this machine; ask for fewer "
                         f"(kinds: {json.dumps(kinds)})")
    path.with_suffix(".tmp").rename(path)
    meta = {"pool": size, "kinds": kinds, "seconds": round(clock.seconds, 1),
            "min_words": MIN_WORDS, "max_words": MAX_WORDS, "seed": SEED}
    meta_path.write_text(json.dumps(meta, indent=2))
    return path


def corpus(passages: int, pool_size: int) -> tuple[Path, dict]:
    """JSONL files of ``corpora.PER_FILE`` records: the first ``passages`` of the shuffled pool (cached),
    and what it holds per kind."""
    folder = SCALE / f"corpus-{passages}-of-{pool_size}"
    if not (folder / "done").exists():
        pool = build_pool(pool_size)
        with pool.open(encoding="utf-8") as fh:
            lines = fh.readlines()
        order = list(range(len(lines)))
        random.Random(SEED).shuffle(order)
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        kinds: dict[str, dict] = {}
        sources: dict[str, set[str]] = {}

        def records() -> Iterator[dict]:
            for index in order[:passages]:
                record = json.loads(lines[index])
                kind, source = record.pop("kind"), record.pop("source")
                kinds.setdefault(kind, {"passages": 0})["passages"] += 1
                sources.setdefault(kind, set()).add(source)
                yield record

        corpora.write_parts(folder, records())
        for kind, files in sources.items():
            kinds[kind]["distinct_sources"] = len(files)
        (folder / "kinds.json").write_text(json.dumps(kinds, indent=2))
        (folder / "done").write_text(str(passages))
    return folder, json.loads((folder / "kinds.json").read_text())

