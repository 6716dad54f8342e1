"""ONNX Runtime sessions for the embedder: the CUDA provider for fp16, a capped CPU arena on request.

Kept apart from batching (``tasks/embedding.py``): what can go wrong here is the environment (CUDA
libraries, a GPU already full, a memory cap below the weights), and each gets its own message.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path

import onnxruntime as ort

from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.oom import OutOfMemoryFloorError, is_out_of_memory

log = logging.getLogger(__name__)

_ARENA_LOCK = threading.Lock()  # the env allocator is process-wide; sessions take it at creation


def create_session(artifact: ModelArtifact, options: ort.SessionOptions,
                    arena_max_mb: int | None) -> ort.InferenceSession:
    """A session for the variant's device; ``arena_max_mb`` caps its memory arena (CPU or GPU)."""
    cap = None if arena_max_mb is None else arena_max_mb << 20
    if artifact.variant == "fp16" and "CUDAExecutionProvider" in ort.get_available_providers():
        preload_cuda_libraries()
        # A dask-cuda worker sees only its own GPU (CUDA_VISIBLE_DEVICES), as device 0.
        cuda = {"device_id": 0, "arena_extend_strategy": "kSameAsRequested"}
        if cap is not None:
            cuda["gpu_mem_limit"] = cap
        try:
            return ort.InferenceSession(artifact.onnx_path, options, providers=[
                ("CUDAExecutionProvider", cuda), "CPUExecutionProvider"])
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            # Seen on an H100 already filled by another process: cublasCreate fails before any
            # batch runs, so there is nothing to halve.
            raise OutOfMemoryFloorError(
                f"{artifact.onnx_path}: cannot create the CUDA session: the GPU is out of memory "
                "before any batch ran (another process holds it?). Free GPU memory, run one "
                f"worker per GPU, or use a CPU variant. Cause: {str(exc).strip()[-300:]}") from exc
    if cap is None:
        return ort.InferenceSession(artifact.onnx_path, options, providers=["CPUExecutionProvider"])
    weights = sum(p.stat().st_size for p in Path(artifact.onnx_path).parent.glob("*.onnx*"))
    if cap <= weights:
        # The arena also holds the prepacked weights; below them ORT's limit check wraps around
        # and the cap silently stops applying, so refuse it.
        raise ValueError(f"model.arena_max_mb={arena_max_mb} is not above the size of the model's "
                         f"weights ({weights / 2**20:.0f} MiB, {artifact.onnx_path}); raise it "
                         "above that, or leave it unset for no cap")
    with _ARENA_LOCK:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                   ort.OrtMemType.DEFAULT)
        # max_mem, extend strategy 1 (grow by what is requested), default chunk settings
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg(cap, 1, -1, -1))
        options.add_session_config_entry("session.use_env_allocators", "1")
        return ort.InferenceSession(artifact.onnx_path, options, providers=["CPUExecutionProvider"])


@functools.cache
def preload_cuda_libraries() -> None:
    """Load CUDA/cuDNN from torch or the nvidia-* wheels, as onnxruntime-gpu ≥ 1.21 recommends.

    Without it the CUDA provider finds them only on LD_LIBRARY_PATH and otherwise silently falls
    back to the CPU provider (reported by ``OnnxEmbedder`` as a warning).
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    try:
        preload()
    except Exception as exc:  # best effort: the system's libraries may still be found
        log.info("onnxruntime.preload_dlls() failed (%s); relying on the system's CUDA libraries", exc)
