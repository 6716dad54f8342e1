"""MPNet and XLM-R exports (CLS and max pooling) against sentence-transformers, fully offline.

Tiny random models are built with transformers and wrapped as sentence-transformers models; their
tokenizers are trained here with `tokenizers` on real text (XLM-R: Unigram/Metaspace like
SentencePiece; MPNet: WordPiece), since no model hub can be reached.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vecpress.infra.settings import ModelSettings
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.export import export_model
from vecpress.tasks.embed.model_files import read_model_spec

pytestmark = pytest.mark.slow
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R / MPNet ids 0..4; pad is 1


def _tokenizer(family: str, texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if family == "xlm-roberta":
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.NFKC()
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=800, special_tokens=SPECIALS, unk_token="<unk>")
    else:
        tok = Tokenizer(models.WordPiece(unk_token="<unk>"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        trainer = trainers.WordPieceTrainer(vocab_size=800, special_tokens=SPECIALS)
    tok.train_from_iterator(texts, trainer)
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    return tok


def build_tiny_model(family: str, pooling: str, root: Path, texts: list[str]) -> Path:
    """A random 2-layer sentence-transformers model of ``family`` with ``pooling``, saved offline."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import (
        MPNetConfig,
        MPNetModel,
        PreTrainedTokenizerFast,
        XLMRobertaConfig,
        XLMRobertaModel,
    )

    tok = _tokenizer(family, texts)
    sizes = dict(vocab_size=tok.get_vocab_size(), hidden_size=64, num_hidden_layers=2,
                 num_attention_heads=4, intermediate_size=128, max_position_embeddings=130,
                 pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    model = XLMRobertaModel(XLMRobertaConfig(**sizes)) if family == "xlm-roberta" else \
        MPNetModel(MPNetConfig(**sizes))
    hf_dir = root / "hf"
    model.save_pretrained(hf_dir)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
                            model_max_length=128).save_pretrained(hf_dir)
    modules = [Transformer(str(hf_dir), max_seq_length=128), Pooling(64, pooling_mode=pooling), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(root / "st"))
    return root / "st"


@pytest.mark.parametrize(("family", "pooling"), [("xlm-roberta", "cls"), ("mpnet", "max")])
def test_family_export_passes_fp32_gate(family, pooling, tmp_path, model_cache, paragraphs) -> None:
    from sentence_transformers import SentenceTransformer

    texts = [t for _, t in paragraphs[:2000]]
    model_dir = build_tiny_model(family, pooling, tmp_path, texts)
    spec = read_model_spec(model_dir)
    assert (spec.model_type, spec.pooling, spec.max_seq_length, spec.dim) == (family, pooling, 128, 64)
    probes = [*texts[:48], "word " * 400]  # one passage over the window: truncated alike
    artifact = export_model(spec, "fp32", model_cache, lambda: probes)  # raises below min cos 0.999
    assert artifact.min_cosine >= 0.999
    meta = json.loads((Path(artifact.onnx_path).parent / "meta.json").read_text())
    assert meta["fusion"] == artifact.fusion and meta["fusion"].startswith("bert: ")
    if family == "xlm-roberta":
        assert "Attention×2" in meta["fusion"]  # RoBERTa attention fuses like BERT's
    else:
        assert "Attention" not in meta["fusion"].replace("SkipLayer", "")  # MPNet's relative bias
    held_out = texts[1000:1032]
    reference = SentenceTransformer(str(model_dir), device="cpu").encode(held_out)
    ours = OnnxEmbedder(artifact, ModelSettings(max_batch_tokens=512)).encode(held_out)
    assert np.sum(reference * ours, axis=1).min() >= 0.9999
