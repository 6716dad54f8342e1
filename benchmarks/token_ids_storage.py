"""What keeping the chunker's token ids costs on disk: passage shards with and without them.

Chunks the standard-library docstring corpus (one document per module, as ``embed.py``) with
``chunk.keep_token_ids`` off and on, writes each as one zstd Parquet shard, and compares bytes.
Writes benchmarks/results/token_ids_storage.json.

    .venv/bin/python benchmarks/token_ids_storage.py
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    from vecpress.infra.settings import ChunkSettings, InputSettings
    from vecpress.tasks.embed.model_files import resolve_model_dir
    from vecpress.tasks.ingest.shard_jobs import chunk_files
    from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs
    from vecpress.tasks.inputs.records import SourceFile

    modules: dict[str, list[str]] = defaultdict(list)
    for doc_id, text in stdlib_docstring_paragraphs():
        modules[doc_id.split(":")[0]].append(text)
    work = Path(tempfile.mkdtemp(prefix="token-ids-"))
    source = work / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": m, "text": "\n\n".join(paras)}) + "\n"
                              for m, paras in modules.items()))
    report: dict = {"documents": len(modules)}
    for keep in (False, True):
        shard = chunk_files([SourceFile(str(source), source.stat().st_size, "jsonl")],
                            str(work / f"keep-{keep}"), InputSettings(),
                            ChunkSettings(keep_token_ids=keep), str(resolve_model_dir(None)),
                            rows_per_shard=10**9)
        size = sum(os.path.getsize(u) for u in shard.urls)
        report["with_ids" if keep else "text_only"] = {"passages": shard.passages, "bytes": size,
                                                      "bytes_per_passage": size / shard.passages}
    report["ratio"] = report["with_ids"]["bytes"] / report["text_only"]["bytes"]
    print(json.dumps(report, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "token_ids_storage.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
