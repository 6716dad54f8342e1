"""Clusters, Milvus access, storage and the settings object."""
