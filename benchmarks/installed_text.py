"""Real text installed on the machine, for the scale benchmark's corpus (scale_corpus.py): which
files to read, how to read them, and which paragraphs count as prose.

A passage is a paragraph of MIN_WORDS-MAX_WORDS words, mostly letters, whitespace normalised; each
kind of text yields ``Item``s: (source file or package, id within the kind, text).
"""

from __future__ import annotations

import gzip
import os
import re
import site
from collections.abc import Callable, Iterator
from pathlib import Path

import corpora

MIN_WORDS, MAX_WORDS = 8, 200

Item = tuple[str, str, str]  # (source file or package, id within the kind, text)


def prose(text: str) -> bool:
    """8-200 words, and at least 70% of the non-space characters are letters (no code, tables)."""
    words = len(text.split())
    if not MIN_WORDS <= words <= MAX_WORDS:
        return False
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) >= 0.7 * len(chars)


def paragraphs(text: str) -> Iterator[tuple[int, str]]:
    """(number, cleaned text) of the blank-line separated paragraphs that read as prose."""
    for n, para in enumerate(re.split(r"\n\s*\n", text)):
        clean = corpora.clean(para)
        if prose(clean):
            yield n, clean


def read_text(path: Path) -> str | None:
    """The file's text (gunzipped if .gz), or None if it is binary, not UTF-8 or unreadable."""
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if b"\0" in data[:4096]:
            return None
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def python_roots() -> list[tuple[str, Path]]:
    """(id prefix, folder) of this interpreter's standard library, then of its site-packages."""
    stdlib = Path(os.path.dirname(os.__file__))
    return [("", stdlib)] + [("site:", Path(p)) for p in sorted(set(site.getsitepackages()))
                             if Path(p).is_dir()]


def files(root: Path, patterns: tuple[str, ...]) -> Iterator[Path]:
    """Files under ``root`` matching any pattern, sorted, once each (symlinks resolved)."""
    seen: set[Path] = set()
    for path in sorted({p for pattern in patterns for p in root.rglob(pattern)}):
        try:
            real = path.resolve()
        except OSError:
            continue
        if real in seen or not real.is_file():
            continue
        seen.add(real)
        yield path


def text_files(root: Path, patterns: tuple[str, ...], label: str,
               skip: Callable[[str], bool] = lambda rel: False) -> Iterator[Item]:
    """Prose paragraphs of the text files under ``root`` (``skip``: paths relative to it to pass
    over), ids prefixed with ``label``."""
    for path in files(root, patterns):
        rel = path.relative_to(root).as_posix()
        if skip(rel):
            continue
        text = read_text(path)
        if text is None:
            continue
        for n, para in paragraphs(text.replace("\x1f", "\n\n")):
            yield f"{label}{rel}", f"{label}{rel}#{n}", para


def package_docs() -> Iterator[Item]:
    """Documentation files shipped inside site-packages (.rst, .md, .txt), not the .dist-info."""
    for _, root in python_roots()[1:]:
        yield from text_files(root, ("*.rst", "*.md", "*.txt"), "",
                              lambda rel: ".dist-info/" in rel or ".egg-info/" in rel)


def usr_share_doc() -> Iterator[Item]:
    """Debian package docs: READMEs, NEWS, changelogs (gunzipped), copyright files."""
    root = Path("/usr/share/doc")
    if root.is_dir():
        yield from text_files(root, ("*.txt", "*.md", "*.rst", "*.gz", "README*", "NEWS*",
                                     "copyright", "changelog*", "AUTHORS*", "THANKS*", "TODO*"),
                              "doc:", lambda rel: rel.endswith((".html.gz", ".ps.gz", ".pdf.gz")))


def licenses() -> Iterator[Item]:
    root = Path("/usr/share/common-licenses")
    if root.is_dir():
        yield from text_files(root, ("*",), "license:")


def info_manuals() -> Iterator[Item]:
    root = Path("/usr/share/info")
    if root.is_dir():
        yield from text_files(root, ("*.info*",), "info:")

