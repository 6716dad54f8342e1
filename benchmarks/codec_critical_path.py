"""What a first run waits for between embedding its codec sample and encoding it: before, the
recall-vs-bytes curve and then the fit; now the fit alone, with the curve measured beside the
stream as a job of its own.

On one FAISS thread, as a Dask worker runs it (the nanny sets OMP_NUM_THREADS=1), on a sample of
``--vectors`` x ``--dim`` vectors with a decaying spectrum (the cost depends on the shape, not
on the text). Writes benchmarks/results/codec_critical_path.json.

    python3 benchmarks/codec_critical_path.py [--vectors 20000] [--dim 384]
"""

from __future__ import annotations

import argparse

import numpy as np
from harness import RESULTS, machine, timed, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    args = parser.parse_args()
    import faiss

    from vecpress.infra.settings import CodecSettings, MilvusSettings
    from vecpress.tasks.codec.choose import fit_new_codec, recall_curve
    from vecpress.tasks.codec.codec import fit_codec
    from vecpress.tasks.codec.shape import resolve_shape

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.vectors, args.dim)).astype(np.float32)
    x = x @ rng.standard_normal((args.dim, args.dim)).astype(np.float32)
    x *= np.linspace(1, 0.05, args.dim).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    codec, milvus = CodecSettings(), MilvusSettings()
    shape = resolve_shape(x, codec)
    curve = timed(lambda: recall_curve(x, codec, milvus))
    fit = timed(lambda: fit_codec(x, shape))
    now = timed(lambda: fit_new_codec(x, codec, milvus))
    result = {"what": __doc__.split("\n\n")[0], "machine": machine("faiss"),
              "faiss_threads": 1, "sample": [args.vectors, args.dim],
              "codec": {"pca_dim": shape.pca_dim, "pq_m": shape.pq_m},
              "seconds": {"before: curve, then fit (on the critical path)": round(curve + fit, 2),
                          "now: fit_new_codec (on the critical path)": round(now, 2),
                          "now: recall_curve (a job beside the stream)": round(curve, 2)},
              "critical_path_ratio": round(now / (curve + fit), 3)}
    for label, seconds in result["seconds"].items():
        print(f"{label:52s} {seconds:6.2f} s")
    print(f"critical path now / before: {result['critical_path_ratio']}")
    write_results(RESULTS / "codec_critical_path.json", result)


if __name__ == "__main__":
    main()
