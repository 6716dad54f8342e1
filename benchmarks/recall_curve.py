"""What the run report's recall-vs-bytes curve costs, with FAISS's PQ training and with its own.

Why: a first ingest measures the curve (``choose.recall_curve``: IVF-PQ at M, M/2 and M/4,
rescored) on one worker while the other workers embed; on a CPU box those seconds are taken from
embedding (stop 45 profile: 24 s of a 30k-passage MiniLM run). This embeds a codec-sized sample of
the pipeline corpus (MiniLM int8; cached under the pipeline work folder), then times the curve on
one thread with each PQ training, alternating, and prints each row's recall.
Results: benchmarks/results/recall_curve_cpu_minilm_int8_<n>.json.

    .venv/bin/python benchmarks/recall_curve.py [--vectors 20000] [--repeats 2] [--sweep 5,40 ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import harness
import numpy as np
from embed_layout import _texts
from pipeline import WORK


def _sample(count: int) -> np.ndarray:
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import OnnxEmbedder

    path = WORK / f"minilm-int8-sample-{count}.npy"
    if path.exists():
        return np.load(path)
    texts = _texts(2 * count)
    pick = np.random.default_rng(0).choice(len(texts), count, replace=False)
    embedder = OnnxEmbedder(harness.export_env_model(harness.model_env("minilm", "int8")),
                            ModelSettings(variant="int8"))
    vectors = embedder.encode([texts[i] for i in pick])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def _training(text: str) -> tuple[int, int]:
    niter, per_centroid = text.split(",")
    return int(niter), int(per_centroid)


def main() -> None:
    from vecpress.infra.settings import CodecSettings, MilvusSettings
    from vecpress.tasks.codec.autotune import FULL_PQ_TRAINING, autotune
    from vecpress.tasks.codec.choose import CURVE_PQ_TRAINING, REPORT_TARGET, report_grid
    from vecpress.tasks.codec.shape import resolve_shape

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vectors", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sweep", type=_training, nargs="*", default=[],
                        help="more trainings to time, each ITERATIONS,PER_CENTROID")
    args = parser.parse_args()
    sample = _sample(args.vectors)
    faiss.omp_set_num_threads(1)  # as on a Dask worker of one thread
    grid = report_grid(resolve_shape(sample, CodecSettings()))
    trainings = {"FAISS's (before)": FULL_PQ_TRAINING, "stop 46's": (10, 40),
                 "the curve's": CURVE_PQ_TRAINING}
    trainings |= {f"sweep {t}": t for t in args.sweep}
    seconds: dict[str, list[float]] = {name: [] for name in trainings}
    rows: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for name, training in trainings.items():
            started = time.perf_counter()
            tuned = autotune(sample, grid, MilvusSettings(), REPORT_TARGET, "cosine", training)
            seconds[name].append(time.perf_counter() - started)
            rows[name] = [{"pq_m": r.pq_m, "recall_ann": round(r.recall_ann, 3),
                           "recall_rescored": round(r.recall_rescored, 3)} for r in tuned.rows]
    medians = {k: round(statistics.median(v), 2) for k, v in seconds.items()}
    for name in trainings:
        print(f"{name:18} {medians[name]:6.2f} s  " + "  ".join(
            f"M={r['pq_m']}: {r['recall_ann']:.3f}/{r['recall_rescored']:.3f}" for r in rows[name]))
    harness.write_results(harness.RESULTS / f"recall_curve_cpu_minilm_int8_{len(sample)}.json", {
        "what": __doc__.split("\n")[0], "machine": harness.machine("faiss", git=True),
        "vectors": len(sample), "pca_dim": grid.pca_dim, "threads": 1,
        "pq_training_niter_per_centroid": {k: list(v) for k, v in trainings.items()},
        "seconds": {k: [round(s, 2) for s in v] for k, v in seconds.items()},
        "median_s": medians, "rows_recall_at_10_ann_rescored": rows})


if __name__ == "__main__":
    main()
