"""How a collection is indexed and searched, derived from its size when it is indexed.

One rule for the Milvus index, for the searches against it and for the codec's auto-tune that
simulates it. Pure arithmetic, so that codec tuning need not import the Milvus client.

Why these rules (measured on docstrings, package READMEs and short quotations; see
docs/compression.md): an IVF index loses recall in the lists it does not probe, and how many
lists a query must probe depends on how clustered the text is, not only on the collection's
size. Short general prose needed half of the lists at 12k vectors to reach recall@10 0.95,
docstrings a tenth at 50k. So a search scans at least ``SCAN_ROWS`` vectors (every one of a
collection up to that size: exact search over the compressed codes) and at least
``PROBE_FRACTION`` of the lists; rescoring then orders the short list with the archived vectors.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from vecpress.infra.settings import MilvusSettings

MAX_NLIST = 65_536
MIN_POINTS_PER_LIST = 39  # FAISS's k-means threshold: fewer points leave centroids undertrained
SCAN_ROWS = 50_000  # vectors a search scans at least (SQ8 codes of 50k x 320-d: 16 MB, a few ms)
PROBE_FRACTION = 0.1  # share of the IVF lists a search probes at least
RESCORE_FACTOR = {"IVF_PQ": 16}  # candidates per result: PQ codes rank coarsely, SQ8 closely
DEFAULT_RESCORE_FACTOR = 8
REBUILD_GROWTH = 4.0  # re-derive (rebuild) the index when the rows grew this much since
# Milvus Lite (3.2) builds every IVF index with 128 lists, whatever nlist it is given (measured:
# nlist 16, 256 and 1024 gave the same recall at every nprobe), so its searches are planned on
# 128 lists: an nprobe planned for nlist 25 scanned a fifth of a 1,000-row collection.
LITE_IVF_NLIST = 128


def default_nlist(rows: int) -> int:
    """IVF lists for ``rows`` vectors: about 4·√rows, at least 8, at most 65,536, and never more
    than rows / 39, so that each list's centroid is trained on enough points."""
    nlist = min(max(4 * math.sqrt(max(rows, 1)), 8), MAX_NLIST, rows // MIN_POINTS_PER_LIST or 1)
    return int(max(1, nlist))


def derived_nprobe(rows: int, nlist: int) -> int:
    """Lists probed per query: enough to scan ``SCAN_ROWS`` vectors and ``PROBE_FRACTION`` of them."""
    per_list = max(rows, 1) / max(nlist, 1)
    wanted = max(math.ceil(SCAN_ROWS / per_list), math.ceil(PROBE_FRACTION * nlist), 1)
    return int(min(nlist, wanted))


@dataclass(frozen=True)
class IndexPlan:
    """The index a collection gets at ``rows`` vectors, and the parameters its searches use."""

    index_type: str
    params: dict[str, Any]  # build parameters for Milvus
    rows: int
    nprobe: int
    rescore_factor: int
    metric: str = "L2"  # Milvus metric: L2, or IP for a dot-product model (tasks.similarity)
    lite: bool = False  # Milvus Lite: its IVF lists are LITE_IVF_NLIST, trained when indexed

    @property
    def nlist(self) -> int | None:
        return self.params.get("nlist")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IndexPlan | None:
        """The plan a build recorded; None for builds indexed before plans were recorded."""
        return cls(**json.loads(text)) if text else None



def plan_index(settings: MilvusSettings, rows: int, pq_m: int, pq_nbits: int,
               nlist: int | None = None, tuned: dict[str, Any] | None = None,
               metric: str = "L2") -> IndexPlan:
    """Index type, build parameters and search parameters for ``rows`` vectors of this codec.

    ``pq_m`` 0: the codec keeps whole vectors (a small collection's exact stage), searched FLAT.
    ``nlist``: the codec's own IVF lists when it has a coarse quantizer. ``tuned``: the point an
    applied auto-tune chose (its share of probed lists is a floor, its rescoring factor is used).
    ``milvus.nprobe`` and ``milvus.rescore_factor`` override the derived values when set.
    """
    kind = settings.index_type
    if pq_m == 0 and kind in ("auto", "IVF_PQ"):
        kind = "FLAT"
    elif kind == "auto":
        kind = "IVF_SQ8" if settings.is_lite else "IVF_PQ"
    params: dict[str, Any] = {}
    nprobe = 1
    lite = settings.is_lite and kind in ("IVF_FLAT", "IVF_SQ8")
    if kind.startswith("IVF"):
        params["nlist"] = LITE_IVF_NLIST if lite else nlist or default_nlist(rows)
        # Lite: every list, as all its searches did before plans knew of its 128 (nprobe ≥ 128
        # from 5,000 rows up); its committed recall figures are of that full scan.
        nprobe = LITE_IVF_NLIST if lite else derived_nprobe(rows, params["nlist"])
        if tuned and tuned.get("probe_share") and tuned.get("base_vectors"):
            # the vectors the tuned point scanned on the sample, not its share of any size's
            # lists: a share of 1.0 on a 20k sample must not become a full scan of millions
            scanned = tuned["probe_share"] * tuned["base_vectors"]
            per_list = max(rows, 1) / params["nlist"]
            nprobe = min(params["nlist"], max(nprobe, math.ceil(scanned / per_list)))
        nprobe = settings.nprobe or nprobe
    if kind == "IVF_PQ":
        params |= {"m": pq_m, "nbits": pq_nbits}
    if kind == "HNSW":
        params = {"M": 16, "efConstruction": 200}
    factor = settings.rescore_factor or (tuned or {}).get("rescore_factor") or \
        RESCORE_FACTOR.get(kind, DEFAULT_RESCORE_FACTOR)
    return IndexPlan(kind, params, rows, nprobe, int(factor), metric, lite)


def replan(built: IndexPlan | None, fresh: IndexPlan, indexed: bool) -> tuple[IndexPlan, bool]:
    """(the plan to serve with, whether to rebuild the index) when ``fresh`` is the plan for the
    collection's rows now and ``built`` the one its index was built with.

    An index is rebuilt when its type should change or the rows grew ``REBUILD_GROWTH``-fold
    since its lists were trained (nlist follows √rows); otherwise it stays, and only the search
    parameters follow the rows. An index of unknown plan (built before plans were recorded) is
    rebuilt once, so that the recorded plan describes the index that serves. On Milvus Lite the
    lists are always ``LITE_IVF_NLIST``: searches follow the rows, and its index is rebuilt for
    growth as a server's is (its lists' centroids retrained), not for an nlist it never had.
    """
    if not indexed or built is None:
        return fresh, True
    if fresh.lite and fresh.index_type == built.index_type and fresh.metric == built.metric:
        grew = fresh.rows >= REBUILD_GROWTH * max(built.rows, 1)
        return (fresh, True) if grew else (replace(fresh, rows=built.rows), False)
    grew = fresh.rows >= REBUILD_GROWTH * max(built.rows, 1) and fresh.nlist != built.nlist
    if fresh.index_type != built.index_type or fresh.metric != built.metric or \
            (built.nlist is not None and grew):
        return fresh, True
    nprobe = fresh.nprobe
    if built.nlist is not None and fresh.nlist:  # fresh's share of the lists, of built's lists
        share = math.ceil(fresh.nprobe / fresh.nlist * built.nlist)
        nprobe = min(built.nlist, max(derived_nprobe(fresh.rows, built.nlist), share))
    return replace(built, nprobe=nprobe,  # rows: those its lists were trained for
                   rescore_factor=fresh.rescore_factor), False


def search_params(settings: MilvusSettings, plan: IndexPlan | None) -> tuple[int, int]:
    """(nprobe, rescore factor) for searches of a build: its recorded plan, unless overridden."""
    nprobe = settings.nprobe or (plan.nprobe if plan else 64)
    factor = settings.rescore_factor or (plan.rescore_factor if plan else DEFAULT_RESCORE_FACTOR)
    return nprobe, factor
