"""The exported model's contract: what every consumer of an ONNX model needs to feed it.

Kept apart from the export itself (fusion, quantisation, the fidelity gate), so that the embedder,
the shard jobs and search import only this small record, never the exporter and its torch imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ModelArtifact:
    """An exported ONNX model plus what inference needs to feed it."""

    onnx_path: str
    model_dir: str
    variant: str
    input_names: tuple[str, ...]
    max_seq_length: int
    dim: int
    min_cosine: float
    mean_cosine: float
    neighbour_recall_at_10: float
    probes: int  # real passages the fidelity figures were measured on
    fusion: str = "none"  # ORT transformer fusion applied: its model_type, or none (and why)
    checked_on: str = "cpu"  # device the fidelity figures were measured on
    own_probes: int = 0  # of ``probes``, texts of the inputs it was first exported for
    store_url: str = ""  # where it is published on an object-store root (tasks.embed.published)
    query_prompt: str = ""  # put before each query (the model's own prompts, or settings)
    document_prompt: str = ""  # put before each passage, at ingest and in the fidelity probe
    similarity: str = "cosine"  # the model's similarity function (tasks.similarity)

    @property
    def name(self) -> str:
        """The artifact's cache directory name: model, variant and content key."""
        return Path(self.onnx_path).parent.name

    @classmethod
    def load(cls, directory: Path) -> ModelArtifact:
        meta = json.loads((directory / "meta.json").read_text())
        meta["input_names"] = tuple(meta["input_names"])
        # Where the artifact is now, not where it was written: runs in other working directories
        # (deployment runs, Dask workers) must find the file.
        meta["onnx_path"] = str((directory / "model.onnx").resolve())
        if (directory / "complete").is_file() and (directory / "tokenizer.json").is_file():
            # a copy of a published artifact: its tokenizer is here, not where it was exported
            meta["model_dir"] = str(directory.resolve())
        return cls(**meta)
