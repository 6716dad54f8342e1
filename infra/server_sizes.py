"""What a Milvus server itself reports about a collection's size (the footprint's server tier).

Milvus 2.3's one per-collection figure is the data coordinator's binlog size (``GetMetrics``,
``system_info``): the flushed rows' field data counted uncompressed (8 bytes an integer, 4 × dim
a vector, the length + 16 a string). Its binlog files are compressed: 4.5% below the figure for
random text, 3.7× below it for 600 docstring passages (Milvus 2.3.5). It reports no index size and
no memory per collection (a query node's segment ``mem_size`` reads 0), so those tiers are left
empty on a server rather than guessed; docs/operations.md says where to read them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pymilvus import MilvusClient

FIELD_DATA = "field data, uncompressed (the server's figure)"


def stored_bytes(client: MilvusClient, name: str) -> dict[str, int]:
    """The collection's binlog bytes as the server's data coordinator reports them ({} when the
    server reports none: a server without the figure, or nothing flushed yet)."""
    from pymilvus.grpc_gen import milvus_pb2

    collection_id = str(client.describe_collection(name)["collection_id"])
    request = milvus_pb2.GetMetricsRequest(request=json.dumps({"metric_type": "system_info"}))
    reply = client._get_connection()._stub.GetMetrics(request, timeout=30)
    nodes = json.loads(reply.response or "{}").get("nodes_info") or []
    for node in nodes:
        infos = node.get("infos") or {}
        sizes = (infos.get("quota_metrics") or {}).get("CollectionBinlogSize") or {}
        if infos.get("type") == "datacoord" and collection_id in sizes:
            return {FIELD_DATA: int(sizes[collection_id])}
    return {}

