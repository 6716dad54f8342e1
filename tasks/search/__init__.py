"""Search: compressed ANN in Milvus, rescoring from the archive, and recall evaluation."""
