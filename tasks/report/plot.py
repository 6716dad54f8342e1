"""The recall-vs-bytes plot of a codec's auto-tune table (PNG bytes, for reports and artifacts)."""

from __future__ import annotations

import io


def recall_bytes_png(autotune: dict) -> bytes:
    """Recall@10 (IVF-PQ alone and rescored) against PQ code bytes, one line per PCA dim."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in worker threads
    import matplotlib.pyplot as plt

    rows = autotune["rows"]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for dim in sorted({r["pca_dim"] for r in rows}):
        line = sorted((r for r in rows if r["pca_dim"] == dim), key=lambda r: r["code_bytes"])
        xs = [r["code_bytes"] for r in line]
        (rescored,) = ax.plot(xs, [r["recall_rescored"] for r in line], marker="o",
                              label=f"PCA-{dim} rescored")
        ax.plot(xs, [r["recall_ann"] for r in line], marker=".", linestyle=":",
                color=rescored.get_color(), label=f"PCA-{dim} ANN only")
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
    ax.set_title(f"{autotune['queries']} held-out queries, rescoring ×{autotune['rescore_factor']}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
