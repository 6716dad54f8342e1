"""Inputs: find files, read records (text, JSONL, Parquet, fsspec URLs) and chunk them into passages."""
