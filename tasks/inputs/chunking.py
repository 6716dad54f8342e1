"""Token-aware chunking: split documents into passages that fit the model's window.

Paragraphs are packed greedily up to ``max_tokens`` (counted with the model's own tokenizer), and a
paragraph longer than that is cut into overlapping token windows. Cuts use the tokenizer's character
offsets, so every passage is an exact slice of the original text. A passage is also bounded in
UTF-8 bytes (what a Milvus VARCHAR holds): one token can span 100 KB (a hex dump is one ``[UNK]``),
so an over-long passage is split again at whitespace, never truncated. Each passage's own token ids
(content only, no special tokens) come with it: the embed stage reuses them instead of tokenising
the passage a second time.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from tokenizers import Encoding, Tokenizer

from vecpress.infra.bounds import MAX_VARCHAR_BYTES
from vecpress.infra.settings import ChunkSettings
from vecpress.tasks.embed.tokenising import bare_tokenizer, tokenizer_fingerprint

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
PIECE_CHARS = 1 << 16  # a longer paragraph is tokenised in pieces of about this many characters
_SPACE = re.compile(r"\s")


@dataclass(frozen=True)
class Passage:
    text: str
    token_ids: list[int]  # the model tokenizer's ids of ``text``, without special tokens


@dataclass(frozen=True)
class _Joined:
    """A long paragraph's encoding, joined from its pieces' (offsets within the paragraph)."""

    ids: list[int]
    offsets: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    tokens: int


class Chunker:
    """Splits text into passages of at most ``settings.max_tokens`` model tokens."""

    def __init__(self, tokenizer: Tokenizer, settings: ChunkSettings,
                 max_bytes: int = MAX_VARCHAR_BYTES) -> None:
        self._tok = bare_tokenizer(tokenizer)  # own copy: no padding/truncation
        self._settings = settings
        self._max_bytes = max_bytes
        self.tokenizer_fingerprint = tokenizer_fingerprint(self._tok)

    def passages(self, text: str) -> list[Passage]:
        return self.passages_many([text])[0]

    def passages_many(self, texts: list[str]) -> list[list[Passage]]:
        """The passages of each text, as ``passages`` makes them, from two ``encode_batch`` calls
        for all the texts (the tokenizer's threads get whole batches, not one document's few
        paragraphs). A passage that is exactly one paragraph's text takes that paragraph's ids:
        the same string, so the same ids; the others (packed, windowed, split at a byte
        bound) are encoded again, together."""
        spans = [self._paragraph_spans(text) for text in texts]
        encodings = self._encode_paragraphs(texts, spans)
        pieces: list[tuple[int, str, bool, list[int] | None]] = []  # (text #, piece, cut, ids)
        at = 0
        for number, (text, doc) in enumerate(zip(texts, spans, strict=True)):
            own = encodings[at : at + len(doc)]
            at += len(doc)
            alone = {(s, e): enc for (s, e), enc in zip(doc, own, strict=True)}
            for span in self._pack(text, doc, own):
                parts = split_to_bytes(text[span.start : span.end].strip(), self._max_bytes)
                one = alone.get((span.start, span.end))
                for piece in parts:
                    reuse = (one.ids if one is not None and len(parts) == 1
                             and piece == text[span.start : span.end] else None)
                    pieces.append((number, piece, len(parts) > 1, reuse))
        again = self._tok.encode_batch([p for _, p, _, ids in pieces if ids is None],
                                       add_special_tokens=False)
        redone = iter(again)
        out: list[list[Passage]] = [[] for _ in texts]
        for number, piece, cut, ids in pieces:
            token_ids = ids if ids is not None else next(redone).ids
            # Short passages are noise, but a piece of a split passage is kept whatever its tokens.
            if cut or len(token_ids) >= self._settings.min_tokens:
                out[number].append(Passage(piece, token_ids))
        return out

    def _encode_paragraphs(self, texts: list[str], spans: list[list[tuple[int, int]]]
                           ) -> list[Encoding | _Joined]:
        """Each paragraph's encoding, from one ``encode_batch``. A paragraph longer than
        ``PIECE_CHARS`` (a book without blank lines, a log) is encoded in pieces cut at
        whitespace, joined again: one huge string runs on one tokenizer thread (a 5 MB paragraph
        chunks 1.52x faster in pieces: benchmarks/results/chunk_long_paragraph.json)."""
        pieces: list[str] = []
        bounds: list[tuple[int, list[int]]] = []  # (first piece, piece offsets in the paragraph)
        for text, doc in zip(texts, spans, strict=True):
            for start, end in doc:
                cuts = _whitespace_cuts(text, start, end, PIECE_CHARS)
                bounds.append((len(pieces), cuts))
                pieces += [text[a:b] for a, b in itertools.pairwise(cuts)]
        encoded = self._tok.encode_batch(pieces, add_special_tokens=False)
        out: list[Encoding | _Joined] = []
        for first, cuts in bounds:
            if len(cuts) == 2:
                out.append(encoded[first])
                continue
            ids: list[int] = []
            offsets: list[tuple[int, int]] = []
            for enc, shift in zip(encoded[first:first + len(cuts) - 1], cuts[:-1], strict=True):
                delta = shift - cuts[0]
                ids += enc.ids
                offsets += [(a + delta, b + delta) for a, b in enc.offsets]
            out.append(_Joined(ids, offsets))
        return out

    def _paragraph_spans(self, text: str) -> list[tuple[int, int]]:
        spans, start = [], 0
        for brk in _PARAGRAPH_BREAK.finditer(text):
            spans.append((start, brk.start()))
            start = brk.end()
        spans.append((start, len(text)))
        return [(s, e) for s, e in spans if text[s:e].strip()]

    def _pack(self, text: str, paragraphs: list[tuple[int, int]],
              encodings: list[Encoding | _Joined]) -> list[_Span]:
        """Greedy packing of paragraph spans (``encodings``: theirs); long paragraphs become
        token windows."""
        limit = self._settings.max_tokens
        pieces: list[_Span] = []
        for (start, end), enc in zip(paragraphs, encodings, strict=True):
            tokens = len(enc)  # an Encoding's length without building its ids list (~1.3 µs)
            if tokens <= limit:
                pieces.append(_Span(start, end, tokens))
            else:
                pieces.extend(self._windows(start, enc.offsets))
        packed: list[_Span] = []
        for piece in pieces:
            last = packed[-1] if packed else None
            # +1 approximates the separator between paragraphs; windows are never merged.
            if last is not None and last.tokens + piece.tokens + 1 <= limit:
                packed[-1] = _Span(last.start, piece.end, last.tokens + piece.tokens + 1)
            else:
                packed.append(piece)
        return packed

    def _windows(self, base: int, offsets: list[tuple[int, int]]) -> list[_Span]:
        limit, overlap = self._settings.max_tokens, self._settings.overlap_tokens
        step = limit - overlap
        windows: list[_Span] = []
        for first in range(0, len(offsets), step):
            window = offsets[first : first + limit]
            # A full-size window marks the span as "full" so that nothing is packed onto it.
            windows.append(_Span(base + window[0][0], base + window[-1][1], limit))
            if first + limit >= len(offsets):
                break
        return windows


def _whitespace_cuts(text: str, start: int, end: int, size: int) -> list[int]:
    """``[start, ..., end]``: cut points about ``size`` characters apart, each at the start of a
    whitespace run (where the tokenizer's pre-tokenisation splits anyway), so that the pieces
    tokenise as the whole does. A run without whitespace is never cut: it may be one token."""
    cuts = [start]
    while end - cuts[-1] > size:
        found = _SPACE.search(text, cuts[-1] + size, end)
        if found is None:
            break
        cut = found.start()
        while cut > cuts[-1] + 1 and text[cut - 1].isspace():  # the run's first space
            cut -= 1
        cuts.append(cut)
    return [*cuts, end]


def split_to_bytes(text: str, max_bytes: int) -> list[str]:
    """``text`` in pieces of at most ``max_bytes`` UTF-8 bytes, cut at the last whitespace before
    the bound when there is one (else at a character boundary); nothing is dropped but the
    whitespace at the cuts. Short text (the usual case) is returned as it is."""
    if len(text) * 4 <= max_bytes or len(text.encode()) <= max_bytes:
        return [text] if text else []
    pieces = []
    while text:
        # The longest prefix within the bound: bytes >= characters, so search by characters.
        end = min(len(text), max_bytes)
        while len(text[:end].encode()) > max_bytes:
            end -= max(1, (len(text[:end].encode()) - max_bytes) // 4)
        if end < len(text):
            space = max((m.start() for m in _SPACE.finditer(text, end // 2, end)), default=-1)
            end = space if space > 0 else end
        piece, text = text[:end].strip(), text[end:].lstrip()
        if piece:
            pieces.append(piece)
    return pieces
