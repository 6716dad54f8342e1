"""vecpress: text → ONNX embeddings → PCA + PQ → Milvus, orchestrated by Prefect and Dask.

The Python API (``vecpress.api``), loaded on first use so that ``import vecpress`` stays light:

- ``open_collection(name, storage_root)`` → a ``Collection`` to ``search``, ``search_embeddings``,
  ``embed`` and describe (``info``), from many threads;
- ``ingest(sources, settings)`` → the run's ``IngestSummary``;
- ``Settings``: every setting of a run, as the CLI's flags and ``VECPRESS_*`` variables set them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vecpress.api import (
        Collection,
        CollectionInfo,
        Hit,
        LimitExceeded,
        ingest,
        open_collection,
    )
    from vecpress.infra.settings import Settings

__all__ = ["Collection", "CollectionInfo", "Hit", "LimitExceeded", "Settings", "ingest",
           "open_collection"]


def __getattr__(name: str) -> Any:
    if name == "Settings":
        from vecpress.infra.settings import Settings

        return Settings
    if name in __all__:
        from vecpress import api

        return getattr(api, name)
    raise AttributeError(f"module 'vecpress' has no attribute {name!r}")
