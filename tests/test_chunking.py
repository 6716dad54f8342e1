"""Token-aware chunking with the model's own tokenizer."""

from __future__ import annotations

import itertools

import pytest

from vecpress.infra.settings import ChunkSettings
from vecpress.tasks.embed.model_files import load_tokenizer, resolve_model_dir
from vecpress.tasks.inputs.chunking import Chunker


@pytest.fixture(scope="module")
def tokenizer():
    tok = load_tokenizer(resolve_model_dir(None))
    tok.no_padding()  # MiniLM's tokenizer.json pads and truncates to 128 by default
    tok.no_truncation()
    return tok


def _texts(chunker: Chunker, text: str) -> list[str]:
    return [p.text for p in chunker.passages(text)]


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def test_short_paragraphs_are_packed_into_one_passage(tokenizer) -> None:
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=64, overlap_tokens=8))
    text = "First paragraph here.\n\nSecond paragraph there.\n\nThird one."
    assert _texts(chunker, text) == [text]


def test_passages_never_exceed_the_budget_and_are_exact_slices(tokenizer, paragraphs) -> None:
    settings = ChunkSettings(max_tokens=48, overlap_tokens=8)
    chunker = Chunker(tokenizer, settings)
    text = "\n\n".join(p for _, p in paragraphs[:60])
    passages = _texts(chunker, text)
    assert len(passages) > 5
    for passage in passages:
        assert passage in text
        assert _tokens(tokenizer, passage) <= settings.max_tokens + 1


def test_long_paragraph_becomes_overlapping_windows(tokenizer) -> None:
    words = [f"word{i}" for i in range(400)]
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=64, overlap_tokens=16))
    passages = _texts(chunker, " ".join(words))
    assert len(passages) > 3
    # Consecutive windows share text (the overlap) and together cover every word.
    for left, right in itertools.pairwise(passages):
        assert left.split()[-1] in right or right.split()[0] in left
    covered = set(" ".join(passages).split())
    assert set(words) <= covered


def test_noise_below_min_tokens_is_dropped(tokenizer) -> None:
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=32, overlap_tokens=4, min_tokens=3))
    assert _texts(chunker, "ok") == []


def test_overlap_must_be_smaller_than_window() -> None:
    with pytest.raises(ValueError, match="overlap_tokens"):
        ChunkSettings(max_tokens=16, overlap_tokens=16)


def test_documents_chunked_together_are_chunked_as_one_by_one(tokenizer, paragraphs) -> None:
    """``passages_many`` (one encode_batch for many documents, paragraph ids reused) gives each
    document exactly the passages and token ids it gets alone, and every passage's ids are its
    own text's encoding: real docstrings, packed and single paragraphs, a paragraph longer than
    the window, leading and trailing whitespace, a passage split at the byte bound, noise."""
    chunker = Chunker(tokenizer, ChunkSettings(max_tokens=48, overlap_tokens=8), max_bytes=600)
    texts = ["\n\n".join(p for _, p in paragraphs[i : i + 7]) for i in range(0, 700, 7)]
    texts += ["  leading space.\n\n\tand a tab paragraph\n\n", "x", "",
              " ".join(f"word{n}" for n in range(300)), "é" * 900 + " " + "ü" * 900,
              "Short.\n\n" + " ".join(p for _, p in paragraphs[700:720])]
    together = chunker.passages_many(texts)
    alone = [chunker.passages_many([t])[0] for t in texts]
    assert together == alone
    assert sum(len(p) for p in together) > 200
    for passage in (p for doc in together for p in doc):
        assert passage.token_ids == tokenizer.encode(passage.text, add_special_tokens=False).ids


@pytest.mark.parametrize("kind", ["minilm", "byte_bpe", "metaspace_unigram"])
def test_a_long_paragraph_tokenised_in_pieces_gives_the_passages_of_the_whole(
        kind, tokenizer, paragraphs, monkeypatch) -> None:
    """A paragraph longer than ``PIECE_CHARS`` is tokenised in pieces cut at whitespace (the
    tokenizer's threads share them); the passages and their ids are those of one encode of the
    whole, for WordPiece, byte-level BPE (the space joins the next token) and Metaspace."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from vecpress.tasks.inputs import chunking

    if kind == "minilm":
        tok = tokenizer
    else:
        corpus = [p for _, p in paragraphs[:400]]
        if kind == "byte_bpe":
            tok = Tokenizer(models.BPE(unk_token="[UNK]"))
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["[UNK]"])
        else:
            tok = Tokenizer(models.Unigram())
            tok.pre_tokenizer = pre_tokenizers.Metaspace()
            trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=["<unk>"],
                                              unk_token="<unk>")
        tok.train_from_iterator(corpus, trainer)
    words = " ".join(p for _, p in paragraphs[:60]).split()
    texts = ["  ".join(words) + " \t " + "y" * 700 + " end",  # double spaces, a long token
             "Short first.\n\n" + " ".join(words[::-1]), "x" * 500]
    chunker = Chunker(tok, ChunkSettings(max_tokens=48, overlap_tokens=8))
    whole = chunker.passages_many(texts)
    monkeypatch.setattr(chunking, "PIECE_CHARS", 97)
    pieces = chunker.passages_many(texts)
    assert pieces == whole
    assert sum(len(p) for p in whole) > 50
