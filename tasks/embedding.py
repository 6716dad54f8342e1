"""ONNX Runtime inference of an exported sentence-transformers model.

Texts are tokenised with the model's fast tokenizer, sorted by length and grouped into batches that
fill a token budget (padded batch size × longest sequence), which keeps padding near zero and the
memory of one batch bounded whatever the length mix.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort

from vecpress.tasks.model_files import load_tokenizer
from vecpress.tasks.onnx_export import ModelArtifact

DEFAULT_BATCH_TOKENS = 8192


class OnnxEmbedder:
    """One ONNX Runtime session plus tokenizer; create once per worker and reuse."""

    def __init__(self, artifact: ModelArtifact, threads: int = 0,
                 max_batch_tokens: int = DEFAULT_BATCH_TOKENS) -> None:
        self.artifact = artifact
        self.max_batch_tokens = max_batch_tokens
        self.truncated = 0  # passages longer than the window, cut to max_seq_length
        self._tok = load_tokenizer(Path(artifact.model_dir))
        self._tok.no_padding()
        self._tok.enable_truncation(artifact.max_seq_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(artifact.onnx_path, options,
                                             providers=["CPUExecutionProvider"])

    @property
    def dim(self) -> int:
        return self.artifact.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` in input order, float32 [len(texts), dim]."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self._tok.encode_batch(texts)
        self.truncated += sum(1 for e in encodings if e.overflowing)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        for batch in self._batches(lengths):
            out[batch] = self._run([encodings[i] for i in batch], int(lengths[batch].max()))
        return out

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Indices grouped so that batch size × longest length stays within the token budget."""
        order = np.argsort(lengths, kind="stable")
        start = 0
        while start < len(order):
            end = start + 1
            while end < len(order) and (end - start + 1) * lengths[order[end]] <= \
                    self.max_batch_tokens:
                end += 1
            yield order[start:end]
            start = end

    def _run(self, encodings: list, seq_len: int) -> np.ndarray:
        # Padding positions are masked out, so any valid token id (0) serves as padding.
        ids = np.zeros((len(encodings), seq_len), dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            ids[row, :n] = enc.ids
            mask[row, :n] = 1
            types[row, :n] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return self._session.run(None, {k: feeds[k] for k in self.artifact.input_names})[0]


@functools.lru_cache(maxsize=2)
def worker_embedder(artifact: ModelArtifact, threads: int, max_batch_tokens: int) -> OnnxEmbedder:
    """The process-wide embedder: each Dask worker process builds its session once, lazily."""
    return OnnxEmbedder(artifact, threads=threads, max_batch_tokens=max_batch_tokens)
