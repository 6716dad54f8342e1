"""The codec: PCA + FAISS PQ fitted on a sample, its training backends, drift checks and auto-tune."""
