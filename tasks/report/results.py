"""What each ingest stage returns: small records the flow turns into the run summary.

Each stage reports its own work (items, seconds, what it produced), so the flow never counts or
times anything itself and the summary is built in one place (``IngestSummary.add_*``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vecpress.tasks.codec.codec import Codec
    from vecpress.tasks.collection.loading import LoadResult
    from vecpress.tasks.inputs.records import InputError


@dataclass
class ChunkResult:
    """Passage shards written by reading and chunking the files of a run."""

    shards: list[str]
    documents: int
    passages: int
    errors: list[InputError]
    seconds: float


@dataclass
class ReuseResult:
    """Passage shards split by the content-hash cache: what still needs embedding, what is ready."""

    to_embed: list[str]
    reused: list[tuple[str, str]]  # (passages, archive) pairs whose vectors were archived before
    reused_rows: int


@dataclass
class EmbedResult:
    """Embedding shards (pk + FP32 vector) written by the embed stage."""

    urls: list[str]
    rows: list[int]
    passages: int
    truncated: int
    variant: str
    seconds: float


@dataclass
class CodecResult:
    """The codec a run encodes with: fitted on its sample, or the collection's, drift-checked."""

    codec: Codec
    trained: bool
    seconds: float
    log_lines: list[str] = field(default_factory=list)


@dataclass
class EncodeResult:
    """Archive shards (pk + fp16 PCA vector), one per embedding shard, in the same order."""

    archives: list[str]
    passages: int
    seconds: float


@dataclass
class LoadStageResult:
    """The Milvus side of a run."""

    load: LoadResult
    passages: int
    seconds: float


@dataclass
class CheckResult:
    """Searches run after loading: own text in the top 3, and recall on held-out queries."""

    sanity_self_top3: float
    recall: dict[str, float]
    queries: int
    seconds: float
