"""The embedding engine on its own: records in, one normalised embedding per record out, in order."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vecpress.tasks.arrays import numpy_to_fixed_list
from vecpress.tasks.embed.embedder import OnnxEmbedder
from vecpress.tasks.inputs.records import Record

BLOCK = 1024  # records embedded per call; bounds memory and paces the progress bar
OUTPUT_SUFFIXES = (".parquet", ".npy")  # the files ``write_vectors`` writes


def embed_records(records: Iterable[Record], embedder: OnnxEmbedder,
                  on_progress: Callable[[int], None] | None = None) -> tuple[list[str], np.ndarray]:
    """(ids, float32 [n, dim]) in input order; ``on_progress(n)`` after every batch."""
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    pending: list[Record] = []

    def flush() -> None:
        if pending:
            block_ids = [r.doc_id for r in pending]
            blocks.append(embedder.encode_documents([r.text for r in pending], ids=block_ids,
                                                    on_progress=on_progress))
            ids.extend(block_ids)
            pending.clear()

    for record in records:
        pending.append(record)
        if len(pending) >= BLOCK:
            flush()
    flush()
    vectors = np.concatenate(blocks) if blocks else np.empty((0, embedder.dim), np.float32)
    return ids, vectors


def check_output(out: Path) -> None:
    """Raise ``ValueError`` unless ``write_vectors`` can write ``out``: callers check it before
    embedding anything, so a mistyped file name costs no embedding time."""
    if out.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"{out}: unsupported output; use a {' or '.join(OUTPUT_SUFFIXES)} "
                         "file name")


def write_vectors(out: Path, ids: list[str], vectors: np.ndarray) -> list[Path]:
    """Parquet (id, embedding) or .npy (+ ``<stem>.ids.txt``, one id per line); returns files."""
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, vectors)
        id_file = out.with_suffix(".ids.txt")
        id_file.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        return [out, id_file]
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()),
                             "embedding": numpy_to_fixed_list(vectors, pa.float32())}), out)
    return [out]
