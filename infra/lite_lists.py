"""Milvus Lite's IVF lists trained on a small segment without FAISS's warning in the output.

Milvus Lite 3 builds an IVF index (IVF_SQ8, the Lite plan's, or IVF_FLAT) on every segment it
seals, with 128 lists, fewer only where the segment has fewer rows. FAISS's k-means asks for 39
points a list and prints, straight to the process's standard error from C++,
``WARNING clustering 2042 points to 128 centroids: please provide at least 4992 training points``
below that. A first ingest of 1,000–5,000 passages, and every small incremental run (its rows
are a segment of their own), printed that line into the user's output, where it reads as a fault.
It is none: Lite's plans probe every one of the 128 lists (``index_plan.LITE_IVF_NLIST``), so a
segment's lists only partition a scan of all of them, and a list of a few points partitions it as
well as one of 39 (recall figures: docs/benchmarks.md, "Milvus Lite's 128 IVF lists").

So the indexes Lite builds here ask FAISS for one point a list (``min_points_per_centroid``),
the only thing the warning checks; the lists, the codes and every search are the same. This
reaches into Lite's modules (as ``lite_arrow`` does): it is installed only where they name FAISS
as a module global and build the FAISS classes below, else Lite is left as it is.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

log = logging.getLogger(__name__)

# Lite's index modules and the FAISS IVF class each of them builds.
_BUILDERS = {"milvus_lite.index.faiss_ivf_sq8": "IndexIVFScalarQuantizer",
             "milvus_lite.index.faiss_ivf_flat": "IndexIVFFlat"}


class _FaissForLite:
    """The ``faiss`` module as Lite's index modules see it: the same, except that the IVF class
    ``ivf_class`` trains its lists on as few points as a segment has, without the warning."""

    def __init__(self, faiss: Any, ivf_class: str) -> None:
        self.faiss, self.ivf_class = faiss, ivf_class

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.faiss, name)
        if name != self.ivf_class:
            return value

        def build(*args: Any) -> Any:
            index = value(*args)
            index.cp.min_points_per_centroid = 1
            return index

        return build


def quiet_small_segments() -> None:
    """Install ``_FaissForLite`` into Lite's IVF index modules, once per process."""
    for module_name, ivf_class in _BUILDERS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        faiss = getattr(module, "faiss", None)
        if isinstance(faiss, _FaissForLite):
            continue
        if faiss is None or not hasattr(faiss, ivf_class):
            log.debug("%s builds no FAISS %s: left as it is", module_name, ivf_class)
            continue
        module.faiss = _FaissForLite(faiss, ivf_class)  # type: ignore[attr-defined]
