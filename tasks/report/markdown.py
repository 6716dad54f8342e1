"""The run report as a table of rows and as markdown (with the auto-tune plot inline).

What the Prefect artifacts of a run show; built here, published by ``flows/artifacts.py``.
"""

from __future__ import annotations

import base64

from vecpress.infra import storage
from vecpress.tasks.report.plot import PLOT_NAME, run_plot
from vecpress.tasks.report.summary import IngestSummary, bytes_text


def summary_rows(summary: IngestSummary) -> list[dict[str, str]]:
    rows = [{"what": "files new / changed / unchanged / deleted",
             "value": " / ".join(str(summary.changes.get(k, 0))
                                 for k in ("new", "changed", "unchanged", "deleted"))},
            {"what": "passages chunked / embedded / reused",
             "value": f"{summary.passages:,} / {summary.passages_embedded:,} / "
                      f"{summary.passages_reused:,}"},
            {"what": "rows deleted from Milvus", "value": f"{summary.rows_deleted:,}"},
            {"what": "rows in Milvus", "value": f"{summary.rows_in_milvus:,}"},
            {"what": "input errors (skipped)", "value": f"{len(summary.errors):,}"}]
    rows += [{"what": f"stage: {s.stage}",
              "value": f"{s.seconds:.1f} s, {s.items:,} {s.unit}, {s.rate_text()}/s"}
             for s in summary.stages]
    if summary.footprint:
        rows += [{"what": f"bytes per passage, {tier}: {kind}", "value": bytes_text(v)}
                 for tier, figures in summary.footprint["tiers"].items()
                 for kind, v in figures["bytes_per_passage"].items()]
        rows += [{"what": f"bytes per passage, {k}", "value": bytes_text(v)}
                 for k, v in summary.footprint["totals_per_passage"].items()]
    rows += [{"what": k, "value": f"{v:.3f}" if isinstance(v, float) else f"{v:,}"}
             for k, v in summary.recall.items()]
    return rows


def report_markdown(summary: IngestSummary, run_dir: str | None = None) -> str:
    lines = [f"# vecpress run `{summary.run_id}` → `{summary.collection}`", "",
             f"Milvus: `{summary.milvus_uri}`; cluster: {summary.cluster or '-'}", "",
             "| what | value |", "| --- | --- |"]
    lines += [f"| {r['what']} | {r['value']} |" for r in summary_rows(summary)]
    codec = summary.codec
    if codec and not summary.codec_reused:
        lines += ["", "## Codec trained", "",
                  f"PCA {codec.get('pca_dim')} keeps {codec.get('explained_variance', 0):.1%} of the "
                  f"variance; PQ{codec.get('pq_m')}×{codec.get('pq_nbits')} relative error "
                  f"{codec.get('pq_relative_error', 0):.3f}; codec id `{codec.get('codec_id')}`."]
        lines += _autotune_section(codec.get("autotune"), run_dir)
    for err in summary.errors[:20]:
        lines.append(f"- input error `{err['source']}` {err['location']}: {err['message']}")
    return "\n".join(lines) + "\n"


def _autotune_section(autotune: dict | None, run_dir: str | None) -> list[str]:
    """The auto-tune table and its recall-vs-bytes plot (PNG beside the run, inline in the report)."""
    if not autotune:
        return ["", "(Sample too small for a recall-vs-bytes curve; set `codec.recall_target` and "
                "a larger `codec.sample_size` to have one.)"]
    title = (f"Auto-tune: recall@10 target {autotune['target']}" if autotune.get("applied", True)
             else "Recall vs bytes around the configured codec (marked)")
    chosen = autotune.get("chosen")
    shown = list(autotune.get("pareto") or autotune["rows"])
    shown += [chosen] if chosen and chosen not in shown else []
    lines = ["", f"### {title}", "",
             f"{len(autotune['rows'])} configurations measured; the Pareto front (bytes, recall, "
             "latency) and the choice (**bold**):", "",
             "| PCA dim | rotation | M | bytes | nprobe / nlist | ×r | recall ANN | recall rescored "
             "| ms/query |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(shown, key=lambda r: (r["code_bytes"], r.get("ms_per_query", 0.0))):
        bold = "**" if r == chosen else ""
        lines.append(f"| {bold}{r['pca_dim']}{bold} | {'yes' if r.get('rotation') else 'no'} | "
                     f"{r['pq_m']} | {r['code_bytes']} | {r.get('nprobe', '?')} / "
                     f"{r.get('nlist', '?')} | {r.get('rescore_factor', '?')} | "
                     f"{r['recall_ann']:.3f} | {r['recall_rescored']:.3f} | "
                     f"{r.get('ms_per_query', 0.0):.2f} |")
    png = run_plot(autotune, run_dir)
    if run_dir:
        lines += ["", f"Plot saved as `{storage.join(run_dir, PLOT_NAME)}`."]
    lines += ["", f"![recall vs bytes](data:image/png;base64,{base64.b64encode(png).decode()})"]
    return lines
