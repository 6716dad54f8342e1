"""The chunker's token ids of a passage shard, kept beside it only until the shard is embedded.

The chunker has every passage's token ids in hand. Without them the embed stage tokenises the
text a second time: with a model as cheap as a GPU makes it, that was most of the stage (83.5
against 32.8 µs a passage with the ids, 16-d model, one thread:
benchmarks/results/profile_stages_300000_stop41_nano_*.json). Kept in the passage shard itself
(``chunk.keep_token_ids``) they about double its size at rest for good. Here they travel in a
sidecar (``tokens-part-NNNN.parquet``: pk and ids, tagged with the tokenizer) that the embed task
reads and then deletes, so nothing stays at rest; garbage collection removes the sidecars of runs
that stopped before embedding.

The ids are the chunker's, exactly those a shard that keeps them holds (and that fp16 runs
always embedded from). A sidecar that is missing, unreadable, of other passages or of another
tokenizer is ignored: the text is tokenised as before.
"""

from __future__ import annotations

import logging
import posixpath

import pyarrow as pa

from vecpress.infra import storage
from vecpress.tasks.inputs.records import TOKEN_IDS, TOKENIZER_KEY

log = logging.getLogger(__name__)

PREFIX = "tokens-"  # not "part-": a listing of a group's passage shards never takes one


def sidecar_url(passages_url: str) -> str:
    return posixpath.join(posixpath.dirname(passages_url),
                          PREFIX + posixpath.basename(passages_url))


def is_sidecar(url: str) -> bool:
    return posixpath.basename(url).startswith(PREFIX)


def write_sidecar(passages_url: str, ids: pa.Table) -> None:
    """Write ``ids`` (pk and token ids, with the tokenizer's tag) beside ``passages_url``."""
    storage.write_parquet(sidecar_url(passages_url), ids)


def with_sidecar_ids(table: pa.Table, passages_url: str) -> pa.Table:
    """``table`` (the passage shard) with its sidecar's token ids as a column, when it has no such
    column itself and a sidecar of the same passages exists; else ``table`` unchanged."""
    if TOKEN_IDS in table.column_names:
        return table
    url = sidecar_url(passages_url)
    try:  # one read, no existence check first: a HEAD per shard less on an object store
        ids = storage.read_parquet(url)
    except FileNotFoundError:
        return table
    except (OSError, pa.ArrowException) as exc:  # a sidecar cut short by a crash, say
        log.info("%s: unreadable (%s); tokenising the text", url, exc)
        return table
    if TOKEN_IDS not in ids.column_names or not ids.column("pk").equals(table.column("pk")):
        log.info("%s holds other passages than %s; tokenising the text", url, passages_url)
        return table
    tag = (ids.schema.metadata or {}).get(TOKENIZER_KEY, b"")
    joined = table.append_column(ids.schema.field(TOKEN_IDS), ids.column(TOKEN_IDS))
    return joined.replace_schema_metadata((table.schema.metadata or {}) | {TOKENIZER_KEY: tag})


def remove_sidecar(passages_url: str) -> None:
    """Delete the shard's sidecar once its embeddings are written (none: nothing to do)."""
    storage.remove(sidecar_url(passages_url))
