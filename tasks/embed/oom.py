"""Out-of-memory handling for inference: recognise allocation failures and adapt the token budget.

ONNX Runtime reports a failed allocation as a generic ``Fail``/``RuntimeException`` whose text says
what happened (its BFC arena, CUDA, cuBLAS or the C++ allocator), so recognition is by message;
torch raises ``OutOfMemoryError``. The budget halves on each failure, keeps the reduced value for
the embedder's lifetime (one per worker) and grows back only after a run of successes, becoming
more cautious each time a grown budget fails again.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

# Substrings of ONNX Runtime / CUDA error texts that mean "could not allocate memory".
OOM_MARKERS = (
    "Failed to allocate memory",  # BFC arena (CPU and CUDA) and the CUDA allocator
    "Available memory of",  # BFC arena over its max_mem / gpu_mem_limit
    "bad_alloc",  # C++ allocator
    "out of memory",  # CUDA failure 2, cudaErrorMemoryAllocation
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUBLAS failure 3",  # cublasCreate when the GPU is full: "the resource allocation failed"
)
GROW_AFTER = 16  # successful batches before the budget is doubled again


def is_out_of_memory(exc: BaseException) -> bool:
    """True for allocation failures of ONNX Runtime, CUDA, torch or Python itself."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return any(marker.lower() in text.lower() for marker in OOM_MARKERS)


class OutOfMemoryFloorError(RuntimeError):
    """A batch does not fit in memory even at the smallest allowed token budget."""


class TokenBudget:
    """Max tokens (padded rows × longest row) per batch, adapted to the memory actually available."""

    def __init__(self, ceiling: int, floor: int, grow_after: int = GROW_AFTER) -> None:
        if floor > ceiling:
            raise ValueError(f"min_batch_tokens ({floor}) must not exceed max_batch_tokens ({ceiling})")
        self.ceiling = ceiling
        self.floor = floor
        self.current = ceiling
        self.grow_after = grow_after
        self.halvings = 0
        self._streak = 0
        self._just_grew = False

    def halve(self) -> bool:
        """Halve after an allocation failure; False when that would go below the floor."""
        if self.current // 2 < self.floor:
            return False
        if self._just_grew:  # the grown budget failed: wait longer before the next growth
            self.grow_after *= 2
        self.current //= 2
        self.halvings += 1
        self._streak = 0
        self._just_grew = False
        return True

    def succeeded(self) -> None:
        """Count a successful batch; double the budget (up to the ceiling) after a run of them."""
        self._streak += 1
        self._just_grew = False
        if self.current < self.ceiling and self._streak >= self.grow_after:
            self.current = min(self.ceiling, self.current * 2)
            self._streak = 0
            self._just_grew = True
            log.info("token budget grown back to %d after %d successful batches",
                     self.current, self.grow_after)


def floor_error(exc: BaseException, ids: list[str], lengths: list[int], budget: TokenBudget,
                where: str) -> OutOfMemoryFloorError:
    """The error for a batch that cannot be made to fit: which passages, how long, what to do."""
    shown = ", ".join(f"{i} ({n} tokens)" for i, n in zip(ids[:10], lengths[:10], strict=True))
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return OutOfMemoryFloorError(
        f"{where}: out of memory embedding {len(ids)} passage(s) of up to {max(lengths)} tokens at "
        f"a token budget of {budget.current} (floor model.min_batch_tokens={budget.floor}): "
        f"{shown}{more}. Give the worker more memory (or raise model.arena_max_mb), lower "
        f"model.min_batch_tokens, or shorten these passages (chunk.max_tokens). Cause: "
        f"{str(exc).strip()[-300:]}"
    )
