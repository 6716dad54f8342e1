"""Manuals installed on the machine, as prose passages for the scale corpus: man pages (their troff
source reduced to running text) and the POD documentation of Perl modules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import corpora
from installed_text import Item, files, paragraphs, prose, read_text

_POD_CODE = re.compile(r"[BCIFLESXZ]<+\s*([^<>]*?)\s*>+")


def perl_pod() -> Iterator[Item]:
    """POD documentation paragraphs of the installed Perl modules (code examples left out)."""
    roots = [Path("/usr/share/perl"), Path("/usr/share/perl5"),
             *sorted(Path("/usr/lib").glob("*-linux-gnu*/perl*"))]
    for root in roots:
        if not root.is_dir():
            continue
        for path in files(root, ("*.pm", "*.pod", "*.pl")):
            text = read_text(path)
            if text is None:
                continue
            in_pod = False
            for n, para in enumerate(re.split(r"\n\s*\n", text)):
                if para.startswith("=cut"):
                    in_pod = False
                elif para.startswith("="):
                    in_pod = True
                elif in_pod and not para[:1].isspace():
                    clean = corpora.clean(_POD_CODE.sub(r"\1", para))
                    if prose(clean):
                        yield str(path), f"{path}#{n}", clean


_ROFF_SKIP = re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)|\\[*n](?:\[[^\]]*\]|\(..|.)|\\s[+-]?\d+|"
                        r"\\[&|^%:/,!)dcuh0~]")
_ROFF_GLYPH = re.compile(r"\\\(..|\\\[[^\]]*\]")
_ROFF_FONT_MACROS = {"B", "I", "BR", "BI", "IB", "IR", "RB", "RI", "SM", "SB"}
_ROFF_BLOCKS = {"TS": "TE", "nf": "fi", "EX": "EE", "EQ": "EN", "de": ".", "ig": "."}


def roff_text(source: str) -> str:
    """The running text of a man page's troff source: macros, tables, examples and escapes out."""
    out: list[str] = []
    until: str | None = None
    for line in source.splitlines():
        if until is not None:
            if line.startswith(f".{until}") or (until == "." and line.strip() == ".."):
                until = None
            continue
        if line.startswith(('.\\"', "'\\\"", '\\"')):  # comments
            continue
        if line.startswith((".", "'")):
            macro, _, rest = line[1:].strip().partition(" ")
            if macro in _ROFF_BLOCKS:
                until = _ROFF_BLOCKS[macro]
            elif macro in _ROFF_FONT_MACROS and rest:
                out.append(rest.replace('"', ""))
            elif macro not in ("br", "in", "ft", "ad", "na", "hy", "nh", "ne", "ti", "ll"):
                out.append("")  # PP, SH, SS, TP, IP, sp...: a paragraph break
            continue
        out.append(line)
    text = "\n".join(out).replace("\\-", "-").replace("\\e", "\\").replace("\\ ", " ")
    return _ROFF_GLYPH.sub(" ", _ROFF_SKIP.sub("", text))


def man_pages(english: bool) -> Iterator[Item]:
    root = Path("/usr/share/man")
    if not root.is_dir():
        return
    sections = sorted(d for d in root.iterdir() if d.is_dir() and d.name.startswith("man") == english)
    for folder in sections:
        for path in files(folder, ("*",)):
            rel = path.relative_to(root).as_posix()
            text = read_text(path)
            if text is None or text.lstrip().startswith(".so "):
                continue
            for n, para in paragraphs(roff_text(text)):
                yield f"man:{rel}", f"man:{rel}#{n}", para

