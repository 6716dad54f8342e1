"""What a scale run leaves on disk: bytes on the storage root (by collection folder, shard file
kind and catalog table) and in Milvus (the Lite ``.db``, or the server's data folder by part),
and the run's own summary as the storage root keeps it.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness import dir_bytes


def read_summary(storage_root: str, collection: str, run_id: str) -> dict | None:
    """The summary.json the run saved under the storage root (None if it is not there)."""
    from vecpress.infra import storage

    url = storage.join(storage_root, "collections", collection, "runs", run_id, "summary.json")
    try:
        return storage.read_json(url) if run_id else None
    except (OSError, ValueError):
        return None


def storage_bytes(storage_root: str, collection: str) -> dict:
    """Bytes under the storage root (models/ cache excluded): the collection's folders apart,
    shards split by file kind."""
    from fsspec.core import url_to_fs

    fs, root = url_to_fs(storage_root)
    files = fs.find(root, detail=True) if fs.exists(root) else {}
    base = f"{root.rstrip('/')}/"
    prefix = f"collections/{collection}/"
    out: dict[str, int] = {}
    shards: dict[str, int] = {}
    total = 0
    for path, info in files.items():
        rel = path[len(base):] if path.startswith(base) else path
        if rel.startswith("models/"):
            continue
        size = int(info.get("size") or 0)
        if not size:  # empty lock and marker files
            continue
        total += size
        if not rel.startswith(prefix):  # a shared --storage-root: other collections
            out["outside_collection"] = out.get("outside_collection", 0) + size
            continue
        part = rel[len(prefix):].split("/", 1)[0]
        out[part] = out.get(part, 0) + size
        if part == "shards":
            name = rel.rsplit("/", 1)[-1]
            kind = re.split(r"[-.]", name, maxsplit=1)[0]
            shards[kind] = shards.get(kind, 0) + size
    commits = {table: sum(1 for p in files if p.startswith(f"{base}{prefix}catalog/{table}/_delta_log/")
                          and p.endswith(".json"))
               for table in ("builds", "files", "shards")}
    data_files = {table: sum(1 for p in files if p.startswith(f"{base}{prefix}catalog/{table}/")
                             and p.endswith(".parquet") and "/_delta_log/" not in p)
                  for table in ("builds", "files", "shards")}
    return {"total_excl_models": total, "collection": out, "shard_files": shards,
            "catalog_commits": commits, "catalog_data_files": data_files}


def milvus_bytes(kind: str, where: Path) -> dict[str, int]:
    """Milvus's bytes on disk: the Lite ``.db`` (``kind`` lite), or the server's data folder split
    into etcd, its write-ahead log and the rest (segments and indexes)."""
    if kind == "lite":
        return {"db": dir_bytes(where)} if where.exists() else {}
    if not where.exists():
        return {}
    parts = {"etcd": dir_bytes(where / "etcd.data"), "rocksmq_wal": dir_bytes(where / "rocksmq")}
    parts["segments_and_indexes"] = dir_bytes(where) - sum(parts.values())
    return parts


def fresh_storage(storage_root: str, collection: str) -> None:
    """Remove the collection from the storage root (a shared ``--storage-root`` keeps the rest)."""
    from vecpress.infra import storage

    storage.remove(storage.join(storage_root, "collections", collection))

