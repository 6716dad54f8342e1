"""Comments of source code installed on the machine, as prose passages for the scale corpus:
blocks of ``#`` lines in Python trees, ``/* */`` and ``//`` comments in C/C++ headers and sources,
and the docstrings of Python trees beyond this interpreter's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import corpora
from installed_text import MAX_WORDS, MIN_WORDS, Item, files, paragraphs, prose, python_roots, read_text

_COMMENT = re.compile(r"^\s*#(?![!])\s?(.*)$")


def other_python_roots() -> list[tuple[str, Path]]:
    """Python trees beyond this interpreter's: other installed interpreters' standard libraries
    (pyenv, the system's), the system's dist-packages, the Google Cloud SDK."""
    mine = {root.resolve() for _, root in python_roots()}
    candidates = sorted(Path.home().glob(".pyenv/versions/*/lib/python[23]*")) + \
        sorted(Path("/usr/lib").glob("python3*")) + [Path("/usr/lib/google-cloud-sdk")]
    return [(f"py:{root}/", root) for root in candidates
            if root.is_dir() and root.resolve() not in mine]


def other_docstrings() -> Iterator[Item]:
    """Docstring paragraphs of the other Python trees (vecpress's own docstring reader)."""
    from vecpress.tasks.inputs.corpus import _tree_paragraphs

    for prefix, root in other_python_roots():
        for doc_id, text in _tree_paragraphs(root, prefix, set(), MIN_WORDS, MAX_WORDS):
            yield doc_id.rsplit(":", 1)[0], doc_id, text


def python_comments(roots: Callable[[], list[tuple[str, Path]]] = python_roots) -> Iterator[Item]:
    """Blocks of consecutive ``#`` comment lines in the standard library and site-packages."""
    for prefix, root in roots():
        for path in files(root, ("*.py",)):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(("site-packages/", "test/", "idlelib/idle_test/")) or "/tests/" in rel:
                continue
            text = read_text(path)
            if text is None:
                continue
            for lineno, clean in comment_blocks(text, _COMMENT):
                yield f"{prefix}{rel}", f"{prefix}{rel}:{lineno}", clean


_C_BLOCK = re.compile(r"/\*+(.*?)\*+/", re.S)
_C_LINE = re.compile(r"^\s*//+!?<?\s?(.*)$")


def comment_blocks(text: str, line_comment: re.Pattern) -> Iterator[tuple[int, str]]:
    """(first line, cleaned prose) of each run of line comments that reads as prose."""
    block: list[str] = []
    for lineno, line in enumerate([*text.splitlines(), ""], 1):
        match = line_comment.match(line)
        if match and match.group(1).strip():
            block.append(match.group(1))
            continue
        if block:
            clean = corpora.clean(" ".join(block))
            if prose(clean):
                yield lineno - len(block), clean
            block = []


def c_comments(roots: list[Path] | None = None) -> Iterator[Item]:
    """``/* */`` paragraphs and ``//`` blocks of the C/C++ headers and sources in site-packages
    (or under ``roots``)."""
    for root in roots if roots is not None else [r for _, r in python_roots()[1:]]:
        for path in files(root, ("*.h", "*.hpp", "*.hxx", "*.cuh", "*.c", "*.cc", "*.cpp")):
            rel = path.relative_to(root).as_posix() if roots is None else str(path)
            text = read_text(path)
            if text is None:
                continue
            for k, body in enumerate(_C_BLOCK.findall(text)):
                lines = "\n".join(re.sub(r"^\s*\*+ ?", "", line) for line in body.splitlines())
                for n, para in paragraphs(lines):
                    yield rel, f"{rel}:b{k}#{n}", para
            for lineno, clean in comment_blocks(text, _C_LINE):
                yield rel, f"{rel}:{lineno}", clean

