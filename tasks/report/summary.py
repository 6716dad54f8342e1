"""The run summary: what went in, what each stage cost, how small the vectors got, how good search is."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

from vecpress.infra import storage
from vecpress.tasks.report.results import CheckResult

if TYPE_CHECKING:
    from vecpress.tasks.collection.gc import GcResult
    from vecpress.tasks.collection.loading import LoadResult
    from vecpress.tasks.ingest.results import StreamResult
    from vecpress.tasks.inputs.records import InputError
    from vecpress.tasks.search.footprint import Footprint

QUARANTINE = "quarantine.jsonl"  # every record a run skipped, in the run's folder

@dataclass
class StageStat:
    stage: str
    seconds: float
    items: int
    unit: str = "passages"

    @property
    def per_second(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("nan")

    def rate_text(self) -> str:
        """Items a second as the tables print it: "—" for a stage that had no items or took no
        time (a run that changed nothing), where the rate is no figure at all, never "nan"."""
        rate = self.per_second
        return "—" if not self.items or not math.isfinite(rate) else f"{rate:,.1f}"


@dataclass
class IngestSummary:
    run_id: str
    collection: str
    milvus_uri: str
    build: str = ""  # the physical Milvus collection this run wrote
    cluster: str = ""
    files: int = 0
    documents: int = 0
    passages: int = 0
    changes: dict[str, int] = field(default_factory=dict)  # files new / changed / unchanged / deleted
    passages_embedded: int = 0
    passages_reused: int = 0  # unchanged text of changed files: archived vectors reused
    rows_deleted: int = 0
    rows_bulk_imported: int = 0  # loaded by Milvus bulk import instead of upserts (first loads)
    shards: int = 0  # shards of the groups this run had to bring in
    shards_skipped: int = 0  # already loaded by an earlier, interrupted run
    shards_resumed: int = 0  # part-way done by an earlier run: picked up where it was left
    stream_seconds: float = 0.0  # wall time of the streaming stages together
    gc: dict = field(default_factory=dict)
    truncated: int = 0
    rows_in_milvus: int = 0
    index: dict = field(default_factory=dict)
    codec: dict = field(default_factory=dict)
    codec_reused: bool = False
    stages: list[StageStat] = field(default_factory=list)
    bytes_per_vector: dict[str, float] = field(default_factory=dict)  # nominal, from the shapes
    footprint: dict = field(default_factory=dict)  # measured: tasks.search.footprint, to_dict()
    sanity_self_top3: float = float("nan")
    recall: dict[str, float] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The summary as ``--json`` and ``summary.json`` give it: a figure that was not measured
        (a run with no probes, a stage with no time) is null, not NaN, which is not JSON (jq and
        strict parsers refused the output of a run that changed nothing)."""
        data = asdict(self)
        data["stages"] = [asdict(s) | {"per_second": s.per_second} for s in self.stages]
        return {key: _finite(value) for key, value in data.items()}

    def add_errors(self, errors: list[InputError]) -> None:
        self.errors += [e.to_dict() for e in errors]

    def add_stream(self, result: StreamResult) -> None:
        """The streaming stages: each stage's busy time summed over the workers, and the wall."""
        self.documents, self.passages = result.documents, result.passages
        self.passages_embedded, self.passages_reused = result.embedded, result.reused
        self.truncated = result.truncated
        self.shards, self.shards_skipped = result.shards, result.shards_skipped
        self.shards_resumed, self.stream_seconds = result.shards_resumed, result.wall
        self.rows_bulk_imported = result.rows_bulk_imported
        self.add_errors(result.errors)
        if result.codec is not None:
            self.codec, self.codec_reused = result.codec.report, not result.codec_trained
        busy = result.busy
        self.stages += [StageStat("read + chunk (busy, all workers)", busy["chunk"],
                                  result.passages),
                        StageStat("embed (busy, all workers)", busy["embed"], result.embedded)]
        if result.codec_trained:
            self.stages.append(StageStat("codec fit (PCA + PQ)", result.codec_seconds,
                                         self.codec.get("train_vectors", 0), "vectors"))
        if result.curve_seconds:
            self.stages.append(StageStat("recall-vs-bytes curve (beside the stream)",
                                         result.curve_seconds,
                                         self.codec.get("autotune", {}).get("queries", 0),
                                         "queries"))
        self.stages += [StageStat("PCA encode of the codec sample (busy)", busy["encode"],
                                  len(result.fp32_urls), "shards"),
                        StageStat("Milvus upsert / bulk import (busy)" if result.rows_bulk_imported
                                  else "Milvus upsert (busy)", busy["load"], result.rows_written),
                        StageStat("streamed: chunk → embed → encode → load (wall)", result.wall,
                                  result.passages)]

    def add_load(self, load: LoadResult, written: int, deleted: int, seconds: float) -> None:
        self.rows_in_milvus, self.index = load.rows_in_milvus, load.index
        if load.plan is not None:  # how it was sized and is searched: type, nlist, nprobe, ×r
            self.index = {**load.index, "plan": asdict(load.plan)}
        self.rows_deleted = deleted
        self.stages.append(StageStat("Milvus flush + index + count", seconds, load.rows_in_milvus,
                                     "rows"))

    def add_gc(self, result: GcResult, footprint: Footprint | None, seconds: float = 0.0
               ) -> None:
        """What GC removed, and what the build then costs, measured (when it was)."""
        self.gc = asdict(result)
        self.footprint = {} if footprint is None else footprint.to_dict()
        if footprint is not None:
            self.stages.append(StageStat("garbage collection + bytes kept, measured", seconds,
                                         footprint.passages))

    def add_check(self, result: CheckResult) -> None:
        self.sanity_self_top3, self.recall = result.sanity_self_top3, result.recall
        self.stages.append(StageStat("checks (search + recall)", result.seconds, result.queries,
                                     "queries"))

    def save(self, run_dir: str) -> None:
        """``summary.json`` and, when records were skipped, ``quarantine.jsonl`` (one skipped
        record per line: source, location, message, hint) in the run's folder."""
        if self.errors:
            storage.write_bytes(storage.join(run_dir, QUARANTINE),
                                "".join(json.dumps(e) + "\n" for e in self.errors).encode())
        storage.write_json(storage.join(run_dir, "summary.json"), self.to_dict())


def index_text(index: dict) -> str:
    """A Milvus index as one line: ``IVF_SQ8 (nlist 128)``; ``FLAT`` without parameters."""
    params = ", ".join(f"{k} {v}" for k, v in (index.get("params") or {}).items())
    return f"{index.get('index_type', '?')}" + (f" ({params})" if params else "")


def index_bytes_per_vector(index_type: str, dim: int, pq_m: int, pq_nbits: int) -> float:
    """Nominal bytes one vector takes in the Milvus index (codes only, without ids or lists)."""
    return {
        "IVF_SQ8": float(dim),
        "IVF_PQ": pq_m * pq_nbits / 8,
        "HNSW": 4.0 * dim + 2 * 16 * 4,
    }.get(index_type, 4.0 * dim)


def bytes_per_vector(embedding_dim: int, codec_report: dict, index: dict) -> dict[str, float]:
    """Bytes one vector takes at each stage, from FP32 embedding to the serving index."""
    dim, m, nbits = codec_report["pca_dim"], codec_report["pq_m"], codec_report["pq_nbits"]
    kind = index.get("index_type", "?")
    return {
        "FP32 embedding": 4.0 * embedding_dim,
        f"PCA-{dim} FP32": 4.0 * dim,
        f"archive: PCA-{dim} {codec_report.get('refine', 'fp16')} (rescoring)":
            float(codec_report.get("refine_bytes", 2 * dim)),
        f"Milvus index {kind} (nominal)": index_bytes_per_vector(
            kind, int(codec_report.get("milvus_dim") or dim), m, nbits),
    }


def footprint_table(footprint: dict) -> Table:
    """The measured bytes of each tier (``tasks.search.footprint.Footprint.to_dict``)."""
    table = Table(title=f"bytes kept, measured ({footprint['passages']:,} passages)")
    for col in ("tier and kind", "bytes", "per passage"):
        table.add_column(col, justify="left" if col == "tier and kind" else "right")
    for tier, figures in footprint["tiers"].items():
        table.add_row(f"[bold]{tier}[/bold]", "", "")
        for kind, size in figures["bytes"].items():
            table.add_row(f"  {kind}", f"{size:,}", bytes_text(figures["bytes_per_passage"][kind]))
    table.add_section()
    for what, per_passage in footprint["totals_per_passage"].items():
        table.add_row(what, "", bytes_text(per_passage))
    return table


def bytes_text(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _finite(value: object) -> object:
    """``value`` with every NaN or infinite float, however deep, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def percent_text(share: float) -> str:
    """A share as a percentage; "—" when nothing was measured (NaN: a run with no probes)."""
    return f"{share:.0%}" if math.isfinite(share) else "—"


def render(summary: IngestSummary, console: Console | None = None) -> None:
    console = console or Console()
    stages = Table(title=f"vecpress run {summary.run_id} → collection '{summary.collection}'")
    for col in ("stage", "items", "seconds", "items/s"):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for s in summary.stages:
        stages.add_row(s.stage, f"{s.items:,} {s.unit}", f"{s.seconds:.1f}", s.rate_text())
    console.print(stages)

    if summary.footprint:
        console.print(footprint_table(summary.footprint))

    facts = Table(title="results", show_header=False)
    facts.add_column("what")
    facts.add_column("value", justify="right")
    facts.add_row("files / documents / passages",
                  f"{summary.files:,} / {summary.documents:,} / {summary.passages:,}")
    if summary.changes:
        facts.add_row("files new / changed / unchanged / deleted", " / ".join(
            f"{summary.changes.get(k, 0):,}" for k in ("new", "changed", "unchanged", "deleted")))
        facts.add_row("passages embedded / reused (same text)",
                      f"{summary.passages_embedded:,} / {summary.passages_reused:,}")
        facts.add_row("rows deleted from Milvus", f"{summary.rows_deleted:,}")
    if summary.shards:
        facts.add_row("shards: total / committed by an earlier run / resumed part-way",
                      f"{summary.shards:,} / {summary.shards_skipped:,} / "
                      f"{summary.shards_resumed:,}")
    if not summary.index:  # nothing changed: no stage touched Milvus
        console.print(facts)
        return
    facts.add_row("rows in Milvus", f"{summary.rows_in_milvus:,}")
    facts.add_row("Milvus index", index_text(summary.index))
    how = "reused" if summary.codec_reused else "trained"
    if summary.codec.get("kind") == "exact":
        shape = f"whole {summary.codec.get('pca_dim')}-d vectors: {summary.codec.get('reason')}"
    else:
        shape = (f"PCA {summary.codec.get('pca_dim')} keeps "
                 f"{summary.codec.get('explained_variance', float('nan')):.1%} of variance")
    facts.add_row("codec", f"{summary.codec.get('codec_id', '?')} ({how}; {shape})")
    facts.add_row("passages over the model window (truncated)", f"{summary.truncated:,}")
    facts.add_row("sanity: own text found in top 3", percent_text(summary.sanity_self_top3))
    for name, value in summary.recall.items():
        facts.add_row(name, f"{value:.3f}" if isinstance(value, float) else f"{value:,}")
    facts.add_row("input errors (skipped)", f"{len(summary.errors):,}")
    console.print(facts)
    for err in summary.errors[:20]:
        where = f"{err['source']}:{err['location']}" if err["location"] else err["source"]
        console.print(f"[red]input error[/red] {where}: {err['message']}"
                      + (f" ({err['hint']})" if err["hint"] else ""))
    if len(summary.errors) > 20:
        console.print(f"… and {len(summary.errors) - 20} more (see the run's {QUARANTINE})")
