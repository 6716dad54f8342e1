"""Tokenising for the embedder: token ids of many texts as flat numpy arrays, in this process or a pool.

At GPU speeds tokenising is the bottleneck, not inference: reading each ``Encoding``'s ids into
Python holds the GIL (~20 µs per ~100-token passage), so one process tops out near 27,000
passages/s on an H100 machine whose ONNX session runs 76,700 (benchmarks/results). A pool of
spawned processes, each with its own tokenizer and a few Rust threads, lifts that limit; its result
is the same arrays the in-process path builds.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from vecpress.tasks.model_files import load_tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tokens:
    """Token ids of several texts: ``flat[starts[i]:starts[i] + lengths[i]]`` are text i's."""

    flat: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    truncated: int  # texts cut to the model's window

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
            initializer=_child_init, initargs=(model_dir, max_seq_length, threads_per_process))

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


def _child_init(model_dir: str, max_seq_length: int, threads: int) -> None:
    global _CHILD
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # read when Rust's thread pool first starts
    _CHILD = (model_tokenizer(model_dir, max_seq_length), max_seq_length)


def _child_tokenise(texts: list[str]) -> Tokens:
    assert _CHILD is not None, "tokeniser process used before its initializer ran"
    return tokenise(_CHILD[0], texts, _CHILD[1])
