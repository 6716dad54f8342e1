"""Tell binary and non-UTF-8 files from text by their first bytes, so the error says what the
file is (binary, UTF-16) instead of advising a Latin-1 re-encoding that cannot help."""

from __future__ import annotations

import codecs

from vecpress.tasks.inputs.records import InputError

UTF16_HINT = "re-encode the file as UTF-8, e.g. `iconv -f utf-16 -t utf-8`"
BINARY_HINT = "remove it from the input, or give only text/JSONL/Parquet files"
SNIFF_BYTES = 8192  # how much of a file is looked at to tell binary from text (as git does)
# Bytes that text hardly ever holds: C0 controls other than tab, newlines, form feed and escape.
CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
BINARY_CONTROL_SHARE = 0.05  # undecodable bytes with this share of control bytes are binary


def unreadable_file(source: str, head: bytes) -> InputError | None:
    """A whole-file error when the file's first bytes show it is not UTF-8 text at all.

    Such a file would otherwise be reported as invalid UTF-8 with advice to re-encode it from
    Latin-1, which cannot help a binary file (or a UTF-16 one, which needs another ``iconv``).
    """
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return InputError(source, "", "UTF-16 text, not UTF-8", UTF16_HINT)
    reason = binary_reason(head)
    if reason is None:
        return None
    return InputError(source, "", f"binary file ({reason}), not text", BINARY_HINT)


def binary_reason(data: bytes) -> str | None:
    """Why ``data`` looks like binary rather than text, or None when it may be text.

    A NUL byte never occurs in text files; without one, undecodable bytes are binary only when
    control bytes are common, so Latin-1 text (high bytes, few controls) still gets the re-encoding
    advice.
    """
    nul = data.find(b"\0")
    if nul >= 0:
        return f"NUL byte at byte {nul}"
    if not data or is_utf8_prefix(data):
        return None
    share = (len(data) - len(data.translate(None, CONTROL_BYTES))) / len(data)
    if share < BINARY_CONTROL_SHARE:
        return None
    return f"{share:.0%} control bytes in the first {len(data)} bytes"


def is_utf8_prefix(data: bytes) -> bool:
    """True when ``data`` is valid UTF-8, allowing a character cut off at its end."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def jsonl_binary(source: str, head: bytes) -> InputError | None:
    """``unreadable_file`` for JSONL, where a NUL inside a JSON string (on a line that starts a
    JSON object and decodes as UTF-8 up to it) is data, not a sign of a binary file."""
    nul = head.find(b"\0")
    if nul >= 0:
        line = head[head.rfind(b"\n", 0, nul) + 1 : nul]
        if line.lstrip().startswith(b"{") and is_utf8_prefix(line):
            return None
    return unreadable_file(source, head)
