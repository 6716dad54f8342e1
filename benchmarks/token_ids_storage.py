"""What keeping the chunker's token ids costs on disk: passage shards with and without them.

Chunks the standard-library docstring corpus (one document per module, as ``embed.py``) with
``chunk.keep_token_ids`` off and on, writes each as one zstd Parquet shard, and compares bytes.
Writes benchmarks/results/token_ids_storage.json.

    .venv/bin/python benchmarks/token_ids_storage.py
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import corpora
from harness import RESULTS, write_results


def main() -> None:
    # No options; a parser all the same, so that --help describes the script instead of running it.
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    from vecpress.infra.settings import ChunkSettings, InputSettings
    from vecpress.tasks.embed.model_files import resolve_model_dir
    from vecpress.tasks.ingest.shard_jobs import chunk_files
    from vecpress.tasks.inputs.records import SourceFile

    modules = corpora.stdlib_modules()
    work = Path(tempfile.mkdtemp(prefix="token-ids-"))
    source = corpora.write_jsonl(work / "docs.jsonl", ({"id": m, "text": "\n\n".join(paras)}
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
    write_results(RESULTS / "token_ids_storage.json", report, quiet=True)


if __name__ == "__main__":
    main()
