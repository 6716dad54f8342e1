"""The recall-vs-bytes plot of a codec's auto-tune table (PNG bytes, for reports and artifacts)."""

from __future__ import annotations

import io
import logging

from vecpress.infra import storage

PLOT_NAME = "recall_vs_bytes.png"  # in the run's folder


def save_plot(autotune: dict, run_dir: str) -> None:
    """Draw the plot into the run's folder where the table is measured: on a worker, beside the
    stream, so that the end of the run does not wait for matplotlib (~0.8 s on 2 cores, its import
    half of it) before the report is published. A plot that cannot be drawn or saved fails
    nothing: the report draws it again (``run_plot``), and a report that fails is only logged."""
    try:
        storage.write_bytes(storage.join(run_dir, PLOT_NAME), recall_bytes_png(autotune))
    except Exception as exc:
        logging.getLogger("vecpress").warning("recall-vs-bytes plot not drawn beside the run: %s",
                                              exc)


def run_plot(autotune: dict, run_dir: str | None) -> bytes:
    """The plot saved in the run's folder (``save_plot``); drawn, and saved there, if it is not
    (a run that resumed a build whose codec an earlier run fitted)."""
    url = storage.join(run_dir, PLOT_NAME) if run_dir else None
    if url and storage.exists(url):
        return storage.read_bytes(url)
    png = recall_bytes_png(autotune)
    if url:
        storage.write_bytes(url, png)
    return png


def recall_bytes_png(autotune: dict) -> bytes:
    """Rescored recall@10 against PQ code bytes: every configuration, the Pareto front coloured
    by latency, the choice circled."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in worker threads
    import matplotlib.pyplot as plt

    rows = autotune["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.scatter([r["code_bytes"] for r in rows], [r["recall_rescored"] for r in rows], s=8,
               color="lightgrey", label="every configuration tried")
    front = sorted(autotune.get("pareto") or rows, key=lambda r: (r["code_bytes"],
                                                                   -r["recall_rescored"]))
    points = ax.scatter([r["code_bytes"] for r in front], [r["recall_rescored"] for r in front],
                        c=[r.get("ms_per_query", 0.0) for r in front], cmap="viridis", s=28,
                        label="Pareto front (bytes, recall, latency)")
    fig.colorbar(points, ax=ax, label="simulated ms per query")
    chosen = autotune.get("chosen")
    if chosen:
        ax.scatter([chosen["code_bytes"]], [chosen["recall_rescored"]], s=160, facecolors="none",
                   edgecolors="black", label="chosen" if autotune.get("applied", True) else "configured")
    ax.axhline(autotune["target"], color="grey", linestyle="--", linewidth=1, label="target")
    ax.set_xscale("log", base=2)
    ticks = sorted({r["code_bytes"] for r in rows})
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("PQ code bytes per vector (Milvus IVF_PQ)")
    ax.set_ylabel("recall@10 vs exact FP32")
    ax.set_title(f"{autotune['queries']} held-out queries, IVF{autotune['nlist']} simulated")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
