"""A real text corpus that exists on every machine: the installed standard library's docstrings."""

from __future__ import annotations

import ast
import os
import re
import site
from collections.abc import Iterator
from pathlib import Path

_WS = re.compile(r"\s+")


def stdlib_docstring_paragraphs(min_words: int = 8, max_words: int = 200, file_stride: int = 1
                                ) -> Iterator[tuple[str, str]]:
    """Yield (id, paragraph) for every docstring paragraph of the Python standard library (of
    every ``file_stride``-th source file).

    Deterministic order (sorted files, source order); ids are ``module/path.py:lineno#n``.
    """
    yield from _tree_paragraphs(Path(os.path.dirname(os.__file__)), "", set(), min_words,
                                max_words, file_stride)


def docstring_paragraphs(min_words: int = 8, max_words: int = 200) -> Iterator[tuple[str, str]]:
    """The standard library's paragraphs, then those of every installed site-packages tree.

    A larger real corpus (benchmarks need >= 50k passages; the standard library gives ~10.7k).
    Deterministic for one environment: sorted roots and files, source order, first copy of a text
    wins. Ids of site-packages paragraphs start with ``site:``.
    """
    seen: set[str] = set()
    stdlib = Path(os.path.dirname(os.__file__))
    yield from _tree_paragraphs(stdlib, "", seen, min_words, max_words)
    for root in sorted({Path(p) for p in site.getsitepackages()}):
        if root.is_dir():
            yield from _tree_paragraphs(root, "site:", seen, min_words, max_words)


def _tree_paragraphs(root: Path, prefix: str, seen: set[str], min_words: int,
                     max_words: int, file_stride: int = 1) -> Iterator[tuple[str, str]]:
    for path in sorted(root.rglob("*.py"))[::file_stride]:
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/tests/" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError, RecursionError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef |
                              ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            line = getattr(node, "lineno", 0)
            for n, para in enumerate(re.split(r"\n\s*\n", doc)):
                text = _WS.sub(" ", para).strip()
                words = len(text.split())
                if min_words <= words <= max_words and text not in seen:
                    seen.add(text)
                    yield f"{prefix}{rel}:{line}#{n}", text


def probe_passages(count: int = 256, file_stride: int = 16) -> list[str]:
    """Real passages spread over the whole standard library, for fidelity checks of exported
    models: the paragraphs of every ``file_stride``-th source file (~670; parsing every file
    was most of a small model's first export), ``count`` of them evenly spread."""
    items = [text for _, text in stdlib_docstring_paragraphs(file_stride=file_stride)]
    return items[:: max(1, len(items) // count)][:count]


def write_demo_corpus(directory: str, n_queries: int = 200, seed: int = 7) -> tuple[str, str, int]:
    """Write the docstring corpus as JSONL, holding out ``n_queries`` paragraphs as queries.

    Returns (corpus path, queries path, corpus size). Held-out queries are never ingested, so the
    recall measured with them is the recall a user would see for new text.
    """
    import json
    import random

    items = list(stdlib_docstring_paragraphs())
    random.Random(seed).shuffle(items)
    queries, corpus = items[:n_queries], items[n_queries:]
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        with (out / name).open("w", encoding="utf-8") as fh:
            for doc_id, text in rows:
                fh.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    return str(out / "corpus.jsonl"), str(out / "queries.jsonl"), len(corpus)
