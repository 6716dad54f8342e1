"""Tokenising for the embedder: token ids of many texts as flat numpy arrays, in this process or a pool.

At GPU speeds tokenising is the bottleneck, not inference: reading each ``Encoding``'s ids into
Python holds the GIL (~20 µs per ~100-token passage), so one process tops out near 27,000
passages/s on an H100 machine whose ONNX session runs 76,700 (benchmarks/results). A pool of
spawned processes, each with its own tokenizer and a few Rust threads, lifts that limit; its result
is the same arrays the in-process path builds.

Better still, the pipeline tokenises only once: the chunker already encodes every passage to count
its tokens, so passage shards carry those content ids (no special tokens, untruncated) and the embed
stage turns them into ``Tokens`` with ``SpecialTokens.wrap``, checked against the tokenizer's
fingerprint so ids from another tokenizer are never used.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from vecpress.tasks.embed.model_files import load_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tokens:
    """Token ids of several texts: ``flat[starts[i]:starts[i] + lengths[i]]`` are text i's."""

    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    truncated: int  # texts cut to the model's window

    def __len__(self) -> int:
        return len(self.lengths)

    def window(self, start: int, stop: int) -> Tokens:
        """Texts ``start:stop`` as their own ``Tokens`` (``truncated`` is not split: 0)."""
        lengths = self.lengths[start:stop]
        first = int(self.starts[start]) if len(lengths) else 0
        flat = self.flat[first:first + int(lengths.sum())]
        return Tokens(flat, self.starts[start:stop] - first, lengths, 0)

    @classmethod
    def concatenate(cls, parts: list[Tokens]) -> Tokens:
        lengths = np.concatenate([p.lengths for p in parts])
        return cls(np.concatenate([p.flat for p in parts]), _starts(lengths), lengths,
                   sum(p.truncated for p in parts))


def model_tokenizer(model_dir: str, max_seq_length: int) -> Tokenizer:
    """The model's fast tokenizer as the embedder uses it: no padding, truncated to the window."""
    tok = load_tokenizer(Path(model_dir))
    tok.no_padding()
    tok.enable_truncation(max_seq_length)
    return tok


def bare_tokenizer(tok: Tokenizer) -> Tokenizer:
    """A copy of ``tok`` without padding or truncation: every token of a text, as the chunker counts."""
    bare = Tokenizer.from_str(tok.to_str())
    bare.no_padding()
    bare.no_truncation()
    return bare


def tokenizer_fingerprint(tok: Tokenizer) -> str:
    """Identity of a tokenizer's vocabulary and rules (padding and truncation settings ignored)."""
    return hashlib.sha256(bare_tokenizer(tok).to_str().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SpecialTokens:
    """What the tokenizer's post-processor puts around one text: ``prefix + content + suffix``."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]

    @classmethod
    def of(cls, tok: Tokenizer) -> SpecialTokens:
        """Read off by encoding a probe with and without special tokens.

        Raises ValueError for a post-processor that does more than wrap the content.
        """
        probe = "vecpress probe text"
        bare = tok.encode(probe, add_special_tokens=False).ids
        full = tok.encode(probe).ids
        for at in range(len(full) - len(bare) + 1):
            if full[at:at + len(bare)] == bare:
                return cls(tuple(full[:at]), tuple(full[at + len(bare):]))
        raise ValueError("this tokenizer's post-processor does more than add tokens around the "
                         "text; token ids from the chunker cannot be reused (text is re-tokenised)")

    def wrap(self, content: pa.ListArray | pa.ChunkedArray, max_seq_length: int) -> Tokens:
        """``Tokens`` of content ids (a list column from a passage shard), exactly as ``tokenise``
        of the texts builds them: truncated on the right to the window, then wrapped."""
        if isinstance(content, pa.ChunkedArray):
            content = pa.concat_arrays(content.chunks) if content.num_chunks != 1 \
                else content.chunk(0)
        if content.null_count:
            raise ValueError(f"{content.null_count} passages have no token ids; re-chunk them")
        offsets = content.offsets.to_numpy().astype(np.int64)
        values = content.values.to_numpy(zero_copy_only=False)
        head, tail = len(self.prefix), len(self.suffix)
        room = max_seq_length - head - tail
        full = np.diff(offsets)
        kept = np.minimum(full, room)
        lengths = kept + head + tail
        starts = _starts(lengths)
        # Content keeps its order, so it fills every position that is not a special token, once
        # the tails of truncated texts are dropped: whole-array operations, no per-token index.
        content_values = values[offsets[0]:offsets[-1]]
        cut = np.flatnonzero(full > room)
        if len(cut):
            keep = np.ones(len(content_values), dtype=bool)
            for row in cut.tolist():
                keep[offsets[row] + room - offsets[0]:offsets[row + 1] - offsets[0]] = False
            content_values = content_values[keep]
        flat = np.empty(int(lengths.sum()), dtype=np.int64)
        special = np.zeros(len(flat), dtype=bool)
        for j, token in enumerate(self.prefix):
            flat[starts + j] = token
            special[starts + j] = True
        for j, token in enumerate(self.suffix):
            flat[starts + lengths - tail + j] = token
            special[starts + lengths - tail + j] = True
        flat[~special] = content_values
        return Tokens(flat, starts, lengths, len(cut))


def tokenise(tok: Tokenizer, texts: list[str], max_seq_length: int) -> Tokens:
    """Tokenise ``texts`` (Rust threads) and read every id out once into flat int64 arrays."""
    encodings = tok.encode_batch(texts)
    id_lists = [e.ids for e in encodings]
    lengths = np.fromiter(map(len, id_lists), dtype=np.int64, count=len(id_lists))
    flat = np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int64,
                       count=int(lengths.sum()))
    at_limit = np.flatnonzero(lengths >= max_seq_length)
    truncated = sum(1 for i in at_limit.tolist() if encodings[i].overflowing)
    return Tokens(flat, _starts(lengths), lengths, truncated)


def _starts(lengths: np.ndarray) -> np.ndarray:
    starts = np.zeros_like(lengths)
    if len(lengths):
        np.cumsum(lengths[:-1], out=starts[1:])
    return starts


class TokeniserPool:
    """``processes`` spawned tokenisers; ``tokenise`` splits texts across them and joins the result."""

    def __init__(self, model_dir: str, max_seq_length: int, processes: int,
                 threads_per_process: int = 2) -> None:
        self.processes = processes
        self.max_seq_length = max_seq_length
        self._pool = ProcessPoolExecutor(
            max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_child_init,
            initargs=(model_dir, max_seq_length, threads_per_process, os.getpid()))

    def tokenise(self, texts: list[str]) -> Tokens:
        size = -(-len(texts) // self.processes)
        slices = [texts[i:i + size] for i in range(0, len(texts), size)]
        return Tokens.concatenate(list(self._pool.map(_child_tokenise, slices)))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def can_spawn_processes() -> bool:
    """False inside daemonic processes (a Dask worker by default), which may not have children."""
    return not multiprocessing.current_process().daemon


_CHILD: tuple[Tokenizer, int] | None = None


def _child_init(model_dir: str, max_seq_length: int, threads: int, parent: int) -> None:
    global _CHILD
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # read when Rust's thread pool first starts
    _CHILD = (model_tokenizer(model_dir, max_seq_length), max_seq_length)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True,
                     name="exit-with-parent").start()


def _exit_with_parent(parent: int, interval_s: float = 0.5) -> None:
    """End this tokeniser when the process that started the pool is gone. A parent killed
    (a Dask worker its nanny terminates, a run's process group on SIGKILL) cannot shut the pool
    down, and a pool process blocked on its call queue never sees EOF (it holds the queue's
    writer too): without this it would run on, orphaned, for ever."""
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(0)


def _child_tokenise(texts: list[str]) -> Tokens:
    assert _CHILD is not None, "tokeniser process used before its initializer ran"
    return tokenise(_CHILD[0], texts, _CHILD[1])
