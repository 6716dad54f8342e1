"""Plain data passed between stages: source files, records, passages and input errors."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import pyarrow as pa

PASSAGE_SCHEMA = pa.schema(
    [
        ("pk", pa.int64()),
        ("doc_id", pa.string()),
        ("chunk", pa.int32()),
        ("text", pa.string()),
        ("source", pa.string()),
    ]
)
TOKEN_IDS = "token_ids"  # optional passage column: the chunker's content ids of the text
METADATA = "metadata"  # passage column: its record's metadata as JSON text (absent in old shards)
TOKENIZER_KEY = b"vecpress.tokenizer"  # passage-shard metadata: fingerprint of the ids' tokenizer


def passage_schema(tokenizer_fingerprint: str | None) -> pa.Schema:
    """``PASSAGE_SCHEMA`` and the metadata, plus token ids tagged with their tokenizer when they
    are kept."""
    schema = PASSAGE_SCHEMA.append(pa.field(METADATA, pa.string()))
    if tokenizer_fingerprint is None:
        return schema
    return schema.append(pa.field(TOKEN_IDS, pa.list_(pa.int32()))).with_metadata(
        {TOKENIZER_KEY: tokenizer_fingerprint.encode()})


def _hash63(value: str) -> int:
    """Non-negative 63-bit blake2b hash: fits Milvus's INT64 keys and numpy int64."""
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


def passage_pk(source: str, doc_id: str, chunk: int) -> int:
    """Deterministic 63-bit primary key of a passage, so re-ingesting upserts instead of duplicating.

    The source file is part of the key: two files that use the same document id keep their own
    rows, and deleting one file removes only its own. (Within one file an id is unique: the
    reader reports a repeated one.)
    """
    return _hash63(f"{source}\x00{doc_id}\x00{chunk}")


def text_hash(text: str) -> int:
    """63-bit hash of a passage's text: the key of the cache that spares re-embedding it."""
    return _hash63(text)


@dataclass(frozen=True)
class SourceFile:
    """One input file, as an fsspec URL, with the reader that understands it."""

    url: str
    size: int
    kind: str  # "text" | "jsonl" | "parquet"
    modified: str = ""  # modification stamp (mtime, ETag, ...): a cheap first change check
    modified_at: str = ""  # when it was modified, ISO 8601 UTC ("" if unknown): its metadata


@dataclass(frozen=True)
class Record:
    """One document read from a source: a whole text file, a JSONL line or a Parquet row."""

    doc_id: str
    text: str
    source: str
    metadata: str | None = None  # its other fields as JSON text (tasks.inputs.metadata)


@dataclass(frozen=True)
class InputError:
    """Bad input that was skipped: what was wrong, where, and what to do about it."""

    source: str
    location: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        where = f"{self.source}:{self.location}" if self.location else self.source
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}: {self.message}{hint}"

    def to_dict(self) -> dict[str, str]:
        return asdict(self)
