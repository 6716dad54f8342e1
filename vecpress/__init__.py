"""vecpress: text → ONNX embeddings → PCA + PQ → Milvus, orchestrated by Prefect and Dask."""
