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
        """The passages of each text, as ``passages`` makes them, from two batched encodes
        for all the texts (the tokenizer's threads get whole batches, not one document's few
        paragraphs). A passage that is exactly one paragraph's text takes that paragraph's ids:
        the same string, so the same ids; the others (packed, windowed, split at a byte
        bound) are encoded again, together."""
        spans = [self._paragraph_spans(text) for text in texts]
        encodings = self._encode_paragraphs(texts, spans)
        max_bytes, min_tokens = self._max_bytes, self._settings.min_tokens
        out: list[list[Passage | None]] = []  # None: a piece encoded again, or dropped
        again: list[str] = []  # the pieces to encode again, in order
        slots: list[tuple[list[Passage | None], int, bool]] = []  # (doc's list, position, cut)
        at = 0
        for text, doc in zip(texts, spans, strict=True):
            own = encodings[at : at + len(doc)]
            at += len(doc)
            mine: list[Passage | None] = []
            out.append(mine)
            for start, end, single in self._pack(doc, own):
                raw = text[start:end]
                stripped = raw.strip()
                parts = split_to_bytes(stripped, max_bytes)
                cut = len(parts) > 1
                if single >= 0 and not cut and len(stripped) == len(raw):
                    ids = own[single].ids
                    if len(ids) >= min_tokens:  # short passages are noise
                        mine.append(Passage(stripped, ids))
                    continue
                for piece in parts:
                    slots.append((mine, len(mine), cut))
                    mine.append(None)
                    again.append(piece)
        encoded = self._tok.encode_batch_fast(again, add_special_tokens=False) if again else []
        for (mine, position, cut), piece, encoding in zip(slots, again, encoded, strict=True):
            ids = encoding.ids
            # A piece of a split passage is kept whatever its tokens.
            if cut or len(ids) >= min_tokens:
                mine[position] = Passage(piece, ids)
        return [[p for p in mine if p is not None] for mine in out]

    def _encode_paragraphs(self, texts: list[str], spans: list[list[tuple[int, int]]]
                           ) -> list[Encoding | _Joined]:
        """Each paragraph's encoding, from one ``encode_batch_fast``. A paragraph longer than
        ``PIECE_CHARS`` (a book without blank lines, a log) is encoded in pieces cut at
        whitespace, joined again: one huge string runs on one tokenizer thread (a 5 MB paragraph
        chunks 1.52x faster in pieces: benchmarks/results/chunk_long_paragraph.json)."""
        pieces: list[str] = []
        # (first piece, piece offsets in the paragraph; None: the paragraph is one piece)
        bounds: list[tuple[int, list[int] | None]] = []
        for text, doc in zip(texts, spans, strict=True):
            for start, end in doc:
                if end - start <= PIECE_CHARS:  # the usual paragraph: one piece
                    bounds.append((len(pieces), None))
                    pieces.append(text[start:end])
                    continue
                whitespace_cuts = _whitespace_cuts(text, start, end, PIECE_CHARS)
                bounds.append((len(pieces), whitespace_cuts))
                pieces += [text[a:b] for a, b in itertools.pairwise(whitespace_cuts)]
        encoded = self._tok.encode_batch_fast(pieces, add_special_tokens=False)
        # Offsets (for token windows) only where they are read: ``encode_batch_fast`` skips them
        # and costs ~3/4 of ``encode_batch``; the ids are the same.
        limit = self._settings.max_tokens
        windowed = [index for first, cuts in bounds
                    if cuts is not None or len(encoded[first]) > limit
                    for index in range(first, first + (1 if cuts is None else len(cuts) - 1))]
        if windowed:
            with_offsets = self._tok.encode_batch([pieces[i] for i in windowed],
                                                  add_special_tokens=False)
            for index, encoding in zip(windowed, with_offsets, strict=True):
                encoded[index] = encoding
        out: list[Encoding | _Joined] = []
        for first, cuts in bounds:
            if cuts is None or len(cuts) == 2:
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

    def _pack(self, paragraphs: list[tuple[int, int]], encodings: list[Encoding | _Joined]
              ) -> list[tuple[int, int, int]]:
        """Greedy packing of paragraph spans (``encodings``: theirs); long paragraphs become
        token windows. Each packed span is (start, end, the paragraph's index when it is exactly
        one paragraph, else -1)."""
        limit = self._settings.max_tokens
        packed: list[tuple[int, int, int]] = []
        tokens: list[int] = []  # of each packed span
        for index, ((start, end), enc) in enumerate(zip(paragraphs, encodings, strict=True)):
            count = len(enc)  # an Encoding's length without building its ids list (~1.3 µs)
            if count > limit:  # a full-size window is "full": nothing is packed onto it
                for window in self._windows(start, enc.offsets):
                    packed.append((*window, -1))
                    tokens.append(limit)
            # +1 approximates the separator between paragraphs; windows are never merged.
            elif packed and tokens[-1] + count + 1 <= limit:
                packed[-1] = (packed[-1][0], end, -1)
                tokens[-1] += count + 1
            else:
                packed.append((start, end, index))
                tokens.append(count)
        return packed

    def _windows(self, base: int, offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
        limit, overlap = self._settings.max_tokens, self._settings.overlap_tokens
        step = limit - overlap
        windows: list[tuple[int, int]] = []
        for first in range(0, len(offsets), step):
            window = offsets[first : first + limit]
            windows.append((base + window[0][0], base + window[-1][1]))
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
