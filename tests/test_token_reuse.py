"""The chunker's token ids reused by the embed stage: same inputs as tokenising the text again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from vecpress.infra import storage
from vecpress.infra.settings import ChunkSettings, InputSettings, ModelSettings
from vecpress.tasks.arrays import read_embeddings
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.embed.model_files import load_tokenizer, resolve_model_dir
from vecpress.tasks.embed.tokenising import SpecialTokens, model_tokenizer, tokenise
from vecpress.tasks.ingest.shard_jobs import _chunker_tokens, chunk_files, embed_shard
from vecpress.tasks.inputs.chunking import Chunker
from vecpress.tasks.inputs.records import TOKEN_IDS, TOKENIZER_KEY, SourceFile
from vecpress.tasks.inputs.token_sidecar import remove_sidecar, sidecar_url, with_sidecar_ids


def _documents(paragraphs: list[tuple[str, str]]) -> list[str]:
    """Real documents, one of them far beyond the model's window, one with accents and CJK."""
    texts = [t for _, t in paragraphs[:400]]
    docs = ["\n\n".join(texts[i:i + 8]) for i in range(0, len(texts), 8)]
    return [*docs, "Déjà vu, naïve café — 東京 and Zürich: " + "word " * 400]


def _assert_same_tokens(wrapped, tokenised) -> None:
    np.testing.assert_array_equal(wrapped.lengths, tokenised.lengths)
    np.testing.assert_array_equal(wrapped.starts, tokenised.starts)
    np.testing.assert_array_equal(wrapped.flat, tokenised.flat)
    assert wrapped.truncated == tokenised.truncated


def test_wrapped_chunker_ids_equal_tokenising_the_passages(paragraphs) -> None:
    """MiniLM, window 128: passages of up to 192 tokens, so some are truncated on both paths."""
    model_dir = resolve_model_dir(None)
    chunker = Chunker(load_tokenizer(model_dir), ChunkSettings(max_tokens=192))
    passages = [p for doc in _documents(paragraphs) for p in chunker.passages(doc)]
    tok = model_tokenizer(str(model_dir), 128)
    ids = pa.array([p.token_ids for p in passages], pa.list_(pa.int32()))
    wrapped = SpecialTokens.of(tok).wrap(ids, 128)
    tokenised = tokenise(tok, [p.text for p in passages], 128)
    assert tokenised.truncated >= 2
    _assert_same_tokens(wrapped, tokenised)
    # A slice of a column (as a chunked array of two pieces) gives the same rows.
    part = pa.chunked_array([ids.slice(5, 10), ids.slice(15, 7)])
    _assert_same_tokens(SpecialTokens.of(tok).wrap(part, 128),
                        tokenise(tok, [p.text for p in passages[5:22]], 128))


def test_wrapping_follows_an_xlm_r_style_tokenizer(paragraphs) -> None:
    """A Unigram/Metaspace tokenizer with ``<s> $A </s>`` (as XLM-R) wraps the same way."""
    from test_model_families import _tokenizer

    texts = [t for _, t in paragraphs[:300]]
    tok = _tokenizer("xlm-roberta", texts)
    chunker = Chunker(tok, ChunkSettings(max_tokens=60, overlap_tokens=8))
    passages = [p for doc in _documents(paragraphs)[:20] for p in chunker.passages(doc)]
    tok.enable_truncation(48)
    specials = SpecialTokens.of(tok)
    assert len(specials.prefix) == 1 and len(specials.suffix) == 1
    wrapped = specials.wrap(pa.array([p.token_ids for p in passages], pa.list_(pa.int32())), 48)
    tokenised = tokenise(tok, [p.text for p in passages], 48)
    np.testing.assert_array_equal(wrapped.lengths, tokenised.lengths)
    np.testing.assert_array_equal(wrapped.starts, tokenised.starts)
    assert wrapped.truncated == tokenised.truncated
    # Unigram's Viterbi has ties ("9999…" as 9+999…+9 or 9+9+999…), broken differently in a
    # document and in its passage with some trained vocabularies: the ids may differ only
    # where both spell the same text.
    differ = [i for i, (start, n) in enumerate(zip(wrapped.starts, wrapped.lengths, strict=True))
              if not np.array_equal(wrapped.flat[start:start + n], tokenised.flat[start:start + n])]
    assert len(differ) <= len(passages) // 100, differ
    for i in differ:
        start, n = wrapped.starts[i], wrapped.lengths[i]
        assert tok.decode(wrapped.flat[start:start + n].tolist()) == \
            tok.decode(tokenised.flat[start:start + n].tolist())


def _chunk(tmp_path, paragraphs, keep: bool) -> str:
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": f"d{i}", "text": doc}) + "\n"
                              for i, doc in enumerate(_documents(paragraphs)[:12])))
    src = SourceFile(str(source), source.stat().st_size, "jsonl")
    shard = chunk_files([src], str(tmp_path / f"passages-{keep}"),
                        InputSettings(), ChunkSettings(keep_token_ids=keep),
                        str(resolve_model_dir(None)), rows_per_shard=10_000)
    assert len(shard.urls) == 1 and not shard.errors
    return shard.urls[0]


def test_embed_shard_reuses_the_chunkers_ids(fp32_artifact, paragraphs, tmp_path) -> None:
    with_ids, text_only = _chunk(tmp_path, paragraphs, True), _chunk(tmp_path, paragraphs, False)
    table = storage.read_parquet(with_ids)
    assert TOKEN_IDS in table.column_names
    assert TOKEN_IDS not in storage.read_parquet(text_only).column_names
    embedder = OnnxEmbedder(fp32_artifact)
    assert _chunker_tokens(table, embedder, with_ids) is not None
    # Ids tagged with another tokenizer, or untagged, are not trusted: the text is tokenised.
    other = table.replace_schema_metadata({TOKENIZER_KEY: b"0123456789abcdef"})
    assert _chunker_tokens(other, embedder, with_ids) is None
    assert _chunker_tokens(table.replace_schema_metadata(None), embedder, with_ids) is None

    remove_sidecar(text_only)  # the text path: no ids beside the shard either
    results = {}
    for name, url in (("ids", with_ids), ("text", text_only)):
        done = embed_shard(url, str(tmp_path / f"{name}-emb.parquet"), fp32_artifact,
                           ModelSettings(), 2)
        results[name] = read_embeddings(done.url)
    np.testing.assert_array_equal(results["ids"][0], results["text"][0])
    np.testing.assert_allclose(results["ids"][1], results["text"][1], atol=2e-5)
    texts = table.column("text").to_pylist()
    np.testing.assert_allclose(results["ids"][1], embedder.encode(texts), atol=2e-5)


def test_a_shard_without_ids_takes_its_sidecars_then_deletes_it(fp32_artifact, paragraphs,
                                                                tmp_path) -> None:
    """CPU runs keep text-only shards: the chunker's ids travel beside the shard until it is
    embedded, and the embeddings are those of a shard that keeps its ids, bit for bit."""
    with_ids, text_only = _chunk(tmp_path, paragraphs, True), _chunk(tmp_path, paragraphs, False)
    assert not storage.exists(sidecar_url(with_ids)) and storage.exists(sidecar_url(text_only))
    kept = storage.read_parquet(with_ids)
    joined = with_sidecar_ids(storage.read_parquet(text_only), text_only)
    assert joined.column(TOKEN_IDS).equals(kept.column(TOKEN_IDS))
    assert joined.schema.metadata[TOKENIZER_KEY] == kept.schema.metadata[TOKENIZER_KEY]
    vectors = {}
    for name, url in (("kept", with_ids), ("sidecar", text_only)):
        done = embed_shard(url, str(tmp_path / f"{name}-emb.parquet"), fp32_artifact,
                           ModelSettings(), 1)
        vectors[name] = read_embeddings(done.url)[1]
    np.testing.assert_array_equal(vectors["kept"], vectors["sidecar"])
    assert not storage.exists(sidecar_url(text_only))  # embedded: nothing kept at rest


def test_a_sidecar_of_other_passages_or_cut_short_is_ignored(paragraphs, tmp_path) -> None:
    url = _chunk(tmp_path, paragraphs, False)
    table, side = storage.read_parquet(url), sidecar_url(url)
    ids = storage.read_parquet(side)
    storage.write_parquet(side, ids.slice(1))  # one passage fewer: another shard's
    assert with_sidecar_ids(table, url).equals(table)
    Path(side).write_bytes(Path(side).read_bytes()[:100])  # a crash during its write
    assert with_sidecar_ids(table, url).equals(table)
    remove_sidecar(url)
    assert with_sidecar_ids(table, url).equals(table)


def test_ids_of_a_missing_passage_are_an_error(paragraphs) -> None:
    tok = model_tokenizer(str(resolve_model_dir(None)), 128)
    with pytest.raises(ValueError, match="1 passages have no token ids"):
        SpecialTokens.of(tok).wrap(pa.array([[5, 6], None], pa.list_(pa.int32())), 128)


def test_chunk_files_rows_are_each_documents_passages_and_an_over_long_id_is_reported(
        paragraphs, tmp_path) -> None:
    """The shard, built column by column with flat token ids, holds exactly each document's own
    passages in order (pk, chunk number, text, ids), and a record whose id Milvus cannot store
    is an input error while the records beside it are chunked."""
    from vecpress.infra.bounds import MAX_VARCHAR_BYTES
    from vecpress.tasks.inputs.records import passage_pk

    docs = _documents(paragraphs)[:6]
    long_id = "é" * (MAX_VARCHAR_BYTES // 2 + 1)  # under the bound in characters, over in bytes
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": doc_id, "text": doc}) + "\n" for doc_id, doc in
                              [*((f"d{i}", d) for i, d in enumerate(docs)), (long_id, docs[0])]))
    src = SourceFile(str(source), source.stat().st_size, "jsonl")
    shard = chunk_files([src], str(tmp_path / "passages"), InputSettings(),
                        ChunkSettings(keep_token_ids=True), str(resolve_model_dir(None)),
                        rows_per_shard=5)
    assert [e.message for e in shard.errors] == [
        f"document id is {len(long_id.encode()):,} bytes, more than Milvus stores "
        f"({MAX_VARCHAR_BYTES:,})"]
    assert shard.documents == len(docs)
    rows = [row for url in shard.urls for row in storage.read_parquet(url).to_pylist()]
    chunker = Chunker(load_tokenizer(resolve_model_dir(None)), ChunkSettings())
    expected = [(passage_pk(str(source), f"d{i}", n), f"d{i}", n, p.text, p.token_ids)
                for i, doc in enumerate(docs) for n, p in enumerate(chunker.passages(doc))]
    assert [(r["pk"], r["doc_id"], r["chunk"], r["text"], r[TOKEN_IDS]) for r in rows] == expected
    assert shard.rows == [len(storage.read_parquet(url)) for url in shard.urls]
    assert len(shard.urls) > 1  # shards were cut, and each was cleared after it was written


def test_a_file_of_many_bad_records_lists_twenty_and_counts_the_rest(paragraphs, tmp_path) -> None:
    """``MAX_ERRORS_PER_FILE`` bad records of a file are listed one by one; the rest are one
    entry that says how many (it said only that there were more: a file of 306 bad records read
    as 21 errors)."""
    from vecpress.tasks.ingest.shard_jobs import MAX_ERRORS_PER_FILE

    source = tmp_path / "bad.jsonl"
    source.write_text("{broken\n" * 306 + json.dumps({"id": "ok", "text": paragraphs[0][1]}) + "\n")
    src = SourceFile(str(source), source.stat().st_size, "jsonl")
    shard = chunk_files([src], str(tmp_path / "passages"), InputSettings(), ChunkSettings(),
                        str(resolve_model_dir(None)), rows_per_shard=64)
    assert len(shard.errors) == MAX_ERRORS_PER_FILE + 1 and shard.documents == 1
    assert all("malformed JSON" in e.message for e in shard.errors[:MAX_ERRORS_PER_FILE])
    assert shard.errors[-1].message == ("286 more bad records in this file were skipped, not "
                                        "listed (306 in all)")
