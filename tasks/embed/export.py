"""Export a sentence-transformers model to ONNX (pooling and normalisation inside the graph).

Artifacts are cached under ``cache_dir/<key>/`` where the key hashes the model's bytes, the variant,
the opset and the library versions, so a second export of the same model is a directory lookup.
Each artifact carries ``meta.json`` with its fidelity against the sentence-transformers reference.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.artifact import ModelArtifact
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.graph_variants import convert_fp16, fuse, quantize_int8
from vecpress.tasks.embed.model_files import ModelSpec, content_hash, stat_key
from vecpress.tasks.recall import neighbour_recall

OPSET = 17
EXPORT_FORMAT_VERSION = 5  # bump when the exported graph or meta.json changes
FIDELITY_FLOORS = {"fp32": 0.999, "fp16": 0.999, "int8": 0.97}


class ExportError(RuntimeError):
    """The exported model does not reproduce the reference closely enough."""


def export_for_settings(model: ModelSettings, cache_dir: Path,
                        own_texts: Callable[[], list[str]] | None = None) -> ModelArtifact:
    """The artifact for the configured model and variant, probed on real passages if exported:
    built-in ones plus ``own_texts`` (a sample of the data about to be embedded), so that the
    fidelity gate also speaks for the user's kind of text."""
    from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir, with_prompts
    from vecpress.tasks.inputs.corpus import probe_passages

    spec = with_prompts(read_model_spec(resolve_model_dir(model.path)), model.query_prompt,
                        model.document_prompt)
    return export_model(spec, model.variant, cache_dir, probe_passages, own_probes=own_texts)


# The packages whose versions shape the exported graph. Read from installed metadata, not by
# importing them: importing torch and transformers alone cost ~4 s of every command's start-up.
EXPORT_PACKAGES = ("torch", "onnx", "onnxruntime", "transformers")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:  # onnxruntime-gpu replaces onnxruntime
            return version(f"{name}-gpu") if name == "onnxruntime" else "none"

    return ";".join(f"{name}={installed(name)}" for name in EXPORT_PACKAGES)


def _recipe(variant: str) -> str:
    return f"{variant}|{OPSET}|{EXPORT_FORMAT_VERSION}|{_versions()}"


def _prompts_key(spec: ModelSpec) -> str:
    """The prompts' part of a key ("" without prompts: the keys of earlier exports stay valid)."""
    if not (spec.query_prompt or spec.document_prompt):
        return ""
    return f"|prompts={json.dumps([spec.query_prompt, spec.document_prompt])}"


def artifact_key(spec: ModelSpec, variant: str) -> str:
    """The artifact's identity: the model's bytes, everything that shapes the export, and the
    prompts (a collection is never searched with other prompts than it was built with)."""
    raw = f"{content_hash(spec.model_dir)}|{_recipe(variant)}{_prompts_key(spec)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _index_entry(spec: ModelSpec, variant: str, cache_dir: Path) -> Path:
    """Where the cache remembers which artifact a model directory *as it is on disk now* maps to.

    Keyed by every file's path, size and mtime, so a cache hit costs a few ``stat`` calls instead
    of hashing the weights (about 1 s for a 90 MB model). Any change to a file's size or mtime
    misses the index and falls back to the content hash, which is the lazy verification.
    """
    raw = f"{spec.model_dir}|{stat_key(spec.model_dir)}|{_recipe(variant)}{_prompts_key(spec)}"
    return cache_dir / "index" / hashlib.sha256(raw.encode()).hexdigest()[:32]


def cached_artifact(spec: ModelSpec, variant: str, cache_dir: Path) -> ModelArtifact | None:
    """The cached artifact for this model directory and variant, if the index knows it."""
    entry = _index_entry(spec, variant, cache_dir)
    if not entry.is_file():
        return None
    target = cache_dir / entry.read_text().strip()
    return ModelArtifact.load(target) if (target / "meta.json").is_file() else None


def _remember(spec: ModelSpec, variant: str, cache_dir: Path, target: Path) -> None:
    entry = _index_entry(spec, variant, cache_dir)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(target.name)
    tmp.replace(entry)


def export_model(
    spec: ModelSpec, variant: str, cache_dir: Path, probes: Callable[[], list[str]],
    min_cosine: float | None = None, own_probes: Callable[[], list[str]] | None = None,
) -> ModelArtifact:
    """Return the cached artifact for (model, variant), exporting and checking it if missing.

    ``probes`` (and ``own_probes``, texts of the user's data) are called only when an export
    happens: building a probe set costs seconds, and a cache hit should not pay for it.
    """
    if variant not in FIDELITY_FLOORS:
        raise ExportError(f"unknown variant '{variant}'; use fp32, fp16 or int8")
    known = cached_artifact(spec, variant, cache_dir)
    if known is not None:
        return known
    target = cache_dir / f"{spec.model_dir.name}-{variant}-{artifact_key(spec, variant)}"
    if (target / "meta.json").is_file():
        _remember(spec, variant, cache_dir, target)
        return ModelArtifact.load(target)
    cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="export-", dir=cache_dir))
    try:
        input_names = _export_fp32(spec, work / "raw.onnx")
        onnx_path = work / "model.onnx"
        fusion = fuse(spec, work / "raw.onnx", onnx_path)
        if variant == "int8":
            quantize_int8(onnx_path, work / "int8.onnx")
            (work / "int8.onnx").replace(onnx_path)
        elif variant == "fp16":
            convert_fp16(onnx_path, work / "fp16.onnx")
            (work / "fp16.onnx").replace(onnx_path)
        (work / "raw.onnx").unlink()
        own = [t for t in (own_probes() if own_probes else []) if t.strip()]
        probe_texts = probes() + own
        probe = ModelArtifact(str(onnx_path), str(spec.model_dir), variant, input_names,
                              spec.max_seq_length, spec.dim, 0.0, 0.0, 0.0, len(probe_texts),
                              query_prompt=spec.query_prompt,
                              document_prompt=spec.document_prompt, similarity=spec.similarity)
        min_cos, mean_cos, recall, device = _fidelity(spec, probe, probe_texts)
        floor = FIDELITY_FLOORS[variant] if min_cosine is None else min_cosine
        if min_cos < floor:
            raise ExportError(
                f"{variant} export of {spec.model_dir} reproduces the reference with min cosine "
                f"{min_cos:.4f} < {floor} on {len(probe_texts)} probe passages ({len(own)} from "
                "your inputs); use --variant fp32, or export it first with a lower floor, "
                "knowingly: vecpress export-model MODEL_DIR --variant "
                f"{variant} --min-cosine X --cache-dir {cache_dir}"
            )
        artifact = ModelArtifact(
            onnx_path=str(target / "model.onnx"), model_dir=str(spec.model_dir), variant=variant,
            input_names=input_names, max_seq_length=spec.max_seq_length, dim=spec.dim,
            min_cosine=min_cos, mean_cosine=mean_cos, neighbour_recall_at_10=recall,
            probes=len(probe_texts), fusion=fusion, checked_on=device, own_probes=len(own),
            query_prompt=spec.query_prompt, document_prompt=spec.document_prompt,
            similarity=spec.similarity,
        )
        (work / "meta.json").write_text(json.dumps(asdict(artifact), indent=2))
        try:
            work.rename(target)
        except OSError:  # another process finished the same export first; keep theirs
            if not (target / "meta.json").is_file():
                raise
        _remember(spec, variant, cache_dir, target)
        return ModelArtifact.load(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _export_fp32(spec: ModelSpec, path: Path) -> tuple[str, ...]:
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(spec.model_dir), attn_implementation="eager").eval()
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")

    class PooledEncoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            kwargs = dict(zip(names, inputs, strict=True))
            hidden = self.model(**kwargs).last_hidden_state
            mask = kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if spec.pooling == "cls":
                pooled = hidden[:, 0]
            elif spec.pooling == "max":
                pooled = (hidden + (mask - 1.0) * 1e9).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if spec.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2.0, dim=1)
            return pooled

    dummy = tuple(torch.ones(2, 8, dtype=torch.int64) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"embedding": {0: "batch"}}
    # The tracer warns about shape-dependent Python branches in transformers' masking code; the
    # fidelity check below, on real passages of many lengths, is what proves the graph right.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(PooledEncoder(), dummy, str(path), input_names=names,
                          output_names=["embedding"], dynamic_axes=axes, opset_version=OPSET,
                          dynamo=False)
    return tuple(names)


def _fidelity(spec: ModelSpec, probe: ModelArtifact,
              probe_texts: list[str]) -> tuple[float, float, float, str]:
    """Min and mean cosine against sentence-transformers' ``encode``, neighbour recall@10, device.

    The probe runs where the variant will run: fp16 on CUDA when present, else the CPU provider.
    """
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Probed as passages are embedded: with the document prompt (as encode(prompt=...) applies it).
    reference = SentenceTransformer(str(spec.model_dir), device="cpu").encode(
        probe_texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=True,
        prompt=spec.document_prompt)
    embedder = OnnxEmbedder(probe)
    ours = embedder.encode_documents(probe_texts)
    ours = ours / np.linalg.norm(ours, axis=1, keepdims=True)
    cosines = np.sum(reference * ours, axis=1)
    return (float(cosines.min()), float(cosines.mean()), neighbour_recall(reference, ours),
            embedder.device)
