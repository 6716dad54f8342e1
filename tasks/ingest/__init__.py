"""The durable streaming ingest: shard groups, the streaming engine over Dask, resume."""
