"""A collection's bookkeeping: the manifest of inputs, incremental plans, loading, reindex and state."""
