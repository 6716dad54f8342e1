"""What Milvus itself holds for a collection, in bytes (the footprint's Milvus tiers).

**Milvus Lite** keeps each collection in its data directory (``collections/<name>/``: Parquet
field data, index files, its log) and, once loaded, every field of every row decoded in memory
(it maps nothing), each vector index built over them (a flat index reads the rows' own vectors)
and a Python key map per segment. Both are measured: the files, and the loaded segments.

**A Milvus server** (2.3) reports one figure per collection, the data coordinator's binlog size
(``GetMetrics``, ``system_info``): the flushed rows' field data counted uncompressed (8 bytes an
integer, 4 × dim a vector, the length + 16 a string). Its binlog files are compressed: 4.5% below
the figure for random text, 3.7× below it for 600 docstring passages (Milvus 2.3.5). It reports
no index size and no memory per collection (a query node's segment ``mem_size`` reads 0), so
those tiers are left empty on a server rather than guessed; docs/operations.md says where to
read them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from vecpress.infra.lite_engine import LiteEngine

FIELD_DATA = "field data, uncompressed (the server's figure)"
INT_OBJECT = 32  # bytes of one Python int key (a 64-bit primary key) in a Lite key map


def lite_stored_bytes(engine: LiteEngine, name: str) -> dict[str, int]:
    """Bytes of Lite collection ``name`` in the data directory, by kind: the rows' fields (every
    field, text included), the index files (vector and scalar), the engine's log and metadata."""
    out = {"field data": 0, "index files": 0, "log and metadata": 0}
    for file in (Path(engine.path) / "collections" / name).rglob("*"):
        if file.is_file() and not file.is_symlink():
            kind = {"data": "field data", "indexes": "index files"}.get(file.parent.name,
                                                                        "log and metadata")
            out[kind] += file.stat().st_size
    return out


def lite_loaded_bytes(engine: LiteEngine, name: str, vector_field: str) -> dict[str, int]:
    """RAM the Lite engine holds for collection ``name``, loaded: the decoded rows (Arrow), the
    vector index files it built (an index in RAM is its file's size; a flat index adds nothing)
    and the key maps."""
    segments = list(engine.loaded_collection(name)._segment_cache.values())
    folder = Path(engine.path) / "collections" / name
    index = sum(f.stat().st_size for f in folder.rglob("*.idx")
                if f.parent.name == "indexes" and f".{vector_field}." in f.name
                and ".flat." not in f.name)
    rows = sum(len(s.pks) for s in segments)
    return {"rows, every field decoded": sum(int(s.table.nbytes) for s in segments),
            "vector index": index,
            "key maps": INT_OBJECT * rows + sum(sys.getsizeof(s.pk_to_row) + sys.getsizeof(s.pks)
                                                for s in segments)}


def server_stored_bytes(client: MilvusClient, name: str) -> dict[str, int]:
    """The collection's binlog bytes as the server's data coordinator reports them ({} when the
    server reports none: a server without the figure, or nothing flushed yet)."""
    from pymilvus.grpc_gen import milvus_pb2

    collection_id = str(client.describe_collection(name)["collection_id"])
    request = milvus_pb2.GetMetricsRequest(request=json.dumps({"metric_type": "system_info"}))
    reply = client._get_connection()._stub.GetMetrics(request, timeout=30)
    for node in json.loads(reply.response or "{}").get("nodes_info") or []:
        infos = node.get("infos") or {}
        sizes = (infos.get("quota_metrics") or {}).get("CollectionBinlogSize") or {}
        if infos.get("type") == "datacoord" and collection_id in sizes:
            return {FIELD_DATA: int(sizes[collection_id])}
    return {}
