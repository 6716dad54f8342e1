"""How many new vectors a codec's drift check needs before its verdict means anything.

Why: an incremental run's drift check compared the codec's reconstruction error on the run's new
vectors with its training error, however few they were: a run adding one passage was judged on
one vector, and with ``codec.drift_action=retrain`` a false verdict rebuilds the whole collection.
This fits the default codec on 20,000 MiniLM int8 docstring embeddings (``embedded.py``'s cache),
then draws ``--draws`` random sets of n other docstring embeddings (text of the same kind: every
"drifted" verdict is false) and reports the error ratio's spread and the share of sets over
``codec.drift_tolerance``. Results: benchmarks/results/drift_sample.json.

    .venv/bin/python benchmarks/drift_sample.py [--draws 300]
"""

from __future__ import annotations

import argparse

import numpy as np
from embedded import embedded_corpus
from harness import RESULTS, machine, write_results

from vecpress.infra.settings import Settings
from vecpress.tasks.codec.codec import fit_codec, relative_error
from vecpress.tasks.codec.shape import resolve_shape

SIZES = (1, 2, 4, 8, 16, 32, 64, 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=300)
    args = parser.parse_args()
    _, _, vectors, _ = embedded_corpus(50_500, "int8", threads=2)
    vectors = np.asarray(vectors, dtype=np.float32)
    settings = Settings().codec
    codec = fit_codec(vectors[:20_000], resolve_shape(vectors[:20_000], settings))
    train = codec.report["reconstruction_relative_error"]
    new = vectors[20_000:]
    rng = np.random.default_rng(0)
    rows = {}
    print(f"{'n':>5} {'median':>7} {'p1':>6} {'p99':>6} {'max':>6} {'over tol':>9}")
    for n in SIZES:
        ratios = np.array([relative_error(v, codec.reconstruct(v)) / train for v in
                           (new[rng.choice(len(new), n, replace=False)] for _ in range(args.draws))])
        p1, p50, p99 = np.percentile(ratios, [1, 50, 99])
        over = float((ratios > settings.drift_tolerance).mean())
        rows[n] = {"median": round(p50, 3), "p1": round(p1, 3), "p99": round(p99, 3),
                   "max": round(float(ratios.max()), 3), "false_drift_share": round(over, 3)}
        print(f"{n:>5} {p50:>7.3f} {p1:>6.3f} {p99:>6.3f} {ratios.max():>6.3f} {over:>9.3f}")
    write_results(RESULTS / "drift_sample.json", {
        "what": __doc__.split("\n")[0], "machine": machine("faiss", git=True),
        "codec": {"pca_dim": codec.report.get("pca_dim"), "pq_m": codec.report.get("pq_m"),
                  "train_relative_error": round(train, 4)},
        "tolerance": settings.drift_tolerance, "draws": args.draws,
        "by_new_vectors": rows})


if __name__ == "__main__":
    main()
