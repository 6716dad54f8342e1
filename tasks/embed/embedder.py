"""ONNX Runtime inference of an exported sentence-transformers model.

Texts are tokenised with the model's fast tokenizer, sorted by length and grouped into batches that
fill a token budget (padded batch size × longest sequence), which keeps padding near zero and the
memory of one batch bounded whatever the length mix. When an allocation fails the budget halves and
the same passages are retried in smaller batches (``tasks/oom.py``).

fp32 and int8 run on the CPU provider; fp16 runs on CUDA with IO binding when ONNX Runtime has the
CUDA provider, else on the CPU provider (correct but not faster) with a warning.
"""

from __future__ import annotations

import functools
import logging
import queue
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.batches import batch_end
from vecpress.tasks.embed.oom import TokenBudget, floor_error, is_out_of_memory
from vecpress.tasks.embed.sessions import create_session
from vecpress.tasks.embed.tokenising import (
    SpecialTokens,
    TokeniserPool,
    Tokens,
    bare_tokenizer,
    can_spawn_processes,
    model_tokenizer,
    tokenise,
    tokenizer_fingerprint,
)

log = logging.getLogger(__name__)

# Passages sorted together into batches. Text windows are tokenised one ahead, and the first is
# waited for, so they stay small; windows of ids cost nothing to make and hold several batches
# even at GPU budgets (H100: 55.7k vs 47.8k passages/s; benchmarks/results/h100_sweep).
WINDOW = 16_384
IDS_WINDOW = 65_536


@dataclass(frozen=True)
class _Prepared:
    start: int  # position in the window's length order
    end: int
    feeds: dict[str, np.ndarray]


class OnnxEmbedder:
    """One ONNX Runtime session plus tokenizer; create once per worker and reuse."""

    def __init__(self, artifact: ModelArtifact, model: ModelSettings | None = None,
                 threads: int = 0, spin: bool = True) -> None:
        """``model`` gives the batching, memory and concurrency settings (its path and variant
        already chose ``artifact``); ``threads`` are ONNX Runtime's intra-op threads (0: all).

        ``spin=False`` stops those threads from spin-waiting after each run: right for search,
        where a query's projection, the Milvus call and rescoring follow at once on the same
        cores (spinning cost a single query ~15 ms on 2 cores); batch embedding keeps it on.
        """
        model = model or ModelSettings()
        self.artifact = artifact
        self.budget = TokenBudget(model.max_batch_tokens, model.min_batch_tokens)
        self.max_padding = model.max_padding
        self.truncated = 0  # passages longer than the window, cut to max_seq_length
        self._tok = model_tokenizer(artifact.model_dir, artifact.max_seq_length)
        self._tokenisers = _tokeniser_pool(artifact, model.tokenizer_processes)
        sessions, arena_max_mb = model.sessions, model.arena_max_mb
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # More sessions run batches concurrently (on a GPU each has its own CUDA stream, so one
        # batch computes while another is copied in or out); a job takes whichever is free.
        created = [create_session(artifact, options, arena_max_mb) for _ in range(sessions)]
        self._sessions: queue.SimpleQueue[ort.InferenceSession] = queue.SimpleQueue()
        for session in created:
            self._sessions.put(session)
        # In flight: one batch per session plus one prepared and waiting for a session. Runner
        # threads call ORT (which releases the GIL) while the caller builds the next batch.
        self._depth = sessions + 1
        self._runners = ThreadPoolExecutor(max_workers=self._depth, thread_name_prefix="onnx-run")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnx-tokenise")
        self.device = "cuda" if "CUDAExecutionProvider" in created[0].get_providers() else "cpu"
        if artifact.variant == "fp16" and self.device == "cpu":
            why = ("the CUDA provider did not load: check that CUDA 13 and cuDNN 9 libraries are "
                   "installed (nvidia-* wheels or LD_LIBRARY_PATH) and a GPU is visible"
                   if "CUDAExecutionProvider" in ort.get_available_providers()
                   else "no CUDA provider/GPU available")
            log.warning("%s: fp16 model on the CPU provider (%s): results are right but slower "
                        "than fp32; use fp32 or int8 on CPU", artifact.onnx_path, why)

    def close(self) -> None:
        """Stop the helper threads and tokeniser processes (also done at interpreter exit)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._runners.shutdown(wait=False, cancel_futures=True)
        if self._tokenisers is not None:
            self._tokenisers.close()

    @property
    def dim(self) -> int:
        return self.artifact.dim

    @property
    def max_batch_tokens(self) -> int:
        """The current token budget (lower than configured after out-of-memory halvings)."""
        return self.budget.current

    def encode(self, texts: list[str], ids: list[str] | None = None,
               on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embeddings of ``texts`` in input order, float32 [len(texts), dim].

        ``ids`` name the passages in out-of-memory errors (default: their positions);
        ``on_progress(n)`` is called after each batch with the number of passages it embedded.
        Texts are tokenised in windows of ``WINDOW`` passages, the next window while this one runs.
        """
        bounds = _window_bounds(len(texts), WINDOW)
        return self._encode_windows(
            bounds, lambda k: self._tokenise(texts[bounds[k]:bounds[k + 1]]), ids, on_progress)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """``encode`` of search queries: each after the model's query prompt, if it has one."""
        return self.encode(_prompted(self.artifact.query_prompt, texts))

    def encode_documents(self, texts: list[str], ids: list[str] | None = None,
                         on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """``encode`` of passages: each after the model's document prompt, if it has one."""
        return self.encode(_prompted(self.artifact.document_prompt, texts), ids, on_progress)

    def encode_tokens(self, tokens: Tokens, ids: list[str] | None = None,
                      on_progress: Callable[[int], None] | None = None) -> np.ndarray:
        """``encode`` for texts tokenised beforehand (``SpecialTokens.wrap`` of the chunker's ids)."""
        self.truncated += tokens.truncated
        bounds = _window_bounds(len(tokens), IDS_WINDOW)
        return self._encode_windows(
            bounds, lambda k: tokens.window(bounds[k], bounds[k + 1]), ids, on_progress)

    @functools.cached_property
    def special_tokens(self) -> SpecialTokens:
        """How this model's tokenizer wraps a text (ValueError if it does more than wrap)."""
        return SpecialTokens.of(self._tok)

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens of each text as the model counts them, past its window too. The embedder's own
        tokenizer counts a text that fits; only one it truncates is counted again, in full."""
        counts = [None if e.overflowing else len(e.ids) for e in self._tok.encode_batch(texts)]
        longer = [text for text, n in zip(texts, counts, strict=True) if n is None]
        full = iter(len(e.ids) for e in bare_tokenizer(self._tok).encode_batch(longer)) \
            if longer else iter(())
        return [n if n is not None else next(full) for n in counts]

    @functools.cached_property
    def tokenizer_fingerprint(self) -> str:
        return tokenizer_fingerprint(self._tok)

    def _encode_windows(self, bounds: list[int], window: Callable[[int], Tokens],
                        ids: list[str] | None,
                        on_progress: Callable[[int], None] | None) -> np.ndarray:
        """Embed texts given as windows ``bounds[k]:bounds[k+1]``; window k+1 is made while k runs."""
        count, windows = bounds[-1], len(bounds) - 1
        if ids is not None and len(ids) != count:
            raise ValueError(f"encode got {len(ids)} ids for {count} texts; give one id per text")
        out = np.empty((count, self.dim), dtype=np.float32)
        pending = self._pool.submit(window, 0) if windows else None
        for k in range(windows):
            assert pending is not None  # submitted before the loop and at the end of each step
            tokens = pending.result()
            if k + 1 < windows:
                pending = self._pool.submit(window, k + 1)
            self.truncated += tokens.truncated
            self._encode_window(tokens, bounds[k], out, ids, on_progress)
        return out

    def _tokenise(self, texts: list[str]) -> Tokens:
        if self._tokenisers is not None:
            return self._tokenisers.tokenise(texts)
        return tokenise(self._tok, texts, self.artifact.max_seq_length)

    def _encode_window(self, tokens: Tokens, offset: int, out: np.ndarray, ids: list[str] | None,
                       on_progress: Callable[[int], None] | None) -> None:
        """Batches sorted by length, up to ``_depth`` in flight, results taken in order."""
        order = np.argsort(tokens.lengths, kind="stable")
        sorted_lengths = tokens.lengths[order]
        inflight: deque[tuple[_Prepared, Future[np.ndarray]]] = deque()
        following = 0  # first passage (in length order) not yet in a batch
        while following < len(order) or inflight:
            while following < len(order) and len(inflight) < self._depth:
                prepared = self._prepare(tokens, order, sorted_lengths, following)
                inflight.append((prepared, self._runners.submit(self._run, prepared.feeds)))
                following = prepared.end
            current, job = inflight.popleft()
            batch = order[current.start:current.end]
            try:
                vectors = job.result()
            except Exception as exc:  # ORT raises several pybind classes; only OOM is handled
                wait([j for _, j in inflight])  # later batches are redone or abandoned
                inflight.clear()
                if not is_out_of_memory(exc):
                    raise
                self._shrink(exc, batch + offset, tokens.lengths[batch], ids)
                following = current.start  # the same passages again, in smaller batches
                continue
            out[batch + offset] = vectors
            self.budget.succeeded()
            if on_progress is not None:
                on_progress(len(batch))

    def _prepare(self, tokens: Tokens, order: np.ndarray, sorted_lengths: np.ndarray,
                 start: int) -> _Prepared:
        """Padded int64 inputs for the batch from ``start`` (``batch_end``: the current token
        budget, ``model.max_padding``)."""
        end = batch_end(sorted_lengths, start, self.budget.current, self.max_padding)
        rows = order[start:end]
        lengths = tokens.lengths[rows]
        columns = np.arange(int(lengths.max()))
        mask = columns < lengths[:, None]
        source = np.minimum(tokens.starts[rows][:, None] + columns, len(tokens.flat) - 1)
        # Padding positions are masked out, so any valid token id (0) serves as padding; single
        # texts have token type 0 throughout.
        input_ids = np.where(mask, tokens.flat[source], 0)
        feeds = {"input_ids": input_ids, "attention_mask": mask.astype(np.int64),
                 "token_type_ids": np.zeros_like(input_ids)}
        return _Prepared(start, end, {k: feeds[k] for k in self.artifact.input_names})

    def _shrink(self, exc: Exception, rows: np.ndarray, lengths: np.ndarray,
                ids: list[str] | None) -> None:
        """Halve the budget after an allocation failure, or raise the floor error naming ``rows``."""
        tokens = len(rows) * int(lengths.max())
        if len(rows) == 1 or not self.budget.halve():
            names = [ids[i] if ids is not None else f"#{i}" for i in rows.tolist()]
            raise floor_error(exc, names, lengths.tolist(), self.budget,
                              Path(self.artifact.onnx_path).parent.name) from exc
        log.warning("out of memory on %d passages × %d tokens (%d tokens); token budget halved "
                    "to %d, retrying these passages", len(rows), int(lengths.max()),
                    tokens, self.budget.current)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        session = self._sessions.get()
        try:
            if self.device == "cpu":
                return session.run(None, feeds)[0]
            return _run_cuda(session, feeds)
        finally:
            self._sessions.put(session)


def _prompted(prompt: str, texts: list[str]) -> list[str]:
    return [prompt + text for text in texts] if prompt else texts


def _window_bounds(count: int, size: int) -> list[int]:
    """Window edges ``0, size, 2·size, ..., count``."""
    return [*range(0, count, size), count] if count else [0]


def _run_cuda(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """IO binding: inputs copied to device 0 as OrtValues, output allocated there by ORT."""
    binding = session.io_binding()
    for name, array in feeds.items():
        binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(array, "cuda", 0))
    binding.bind_output(session.get_outputs()[0].name, "cuda", 0)
    session.run_with_iobinding(binding)
    return binding.copy_outputs_to_cpu()[0]


def _tokeniser_pool(artifact: ModelArtifact, processes: int) -> TokeniserPool | None:
    """A pool of tokeniser processes when asked for and allowed here, else None (tokenise here)."""
    if processes <= 0:
        return None
    if not can_spawn_processes():
        log.warning("model.tokenizer_processes=%d ignored: this is a daemonic process (a Dask worker "
                    "started with distributed.worker.daemon=True), which may not start children; "
                    "tokenising in the worker itself", processes)
        return None
    return TokeniserPool(artifact.model_dir, artifact.max_seq_length, processes)
