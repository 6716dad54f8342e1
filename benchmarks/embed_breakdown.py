"""Where the time of a CUDA encode goes: tokenising, reading the ids into numpy, and inference.

Times, on the same passages as ``embed.py`` (≤126 + 2 tokens): ``encode_batch`` alone, the
embedder's whole tokenising step (ids read out of the Encodings into flat numpy arrays), turning the
chunker's stored ids into the same arrays (``SpecialTokens.wrap``, the ids path), the ONNX
session alone on fixed-shape batches (inputs copied to the GPU each call, as in ``encode``), and
end-to-end ``encode`` at several token budgets and with tokeniser process pools, and ``encode``'s
batching and inference on ids tokenised beforehand (its ceiling when tokenising costs nothing), keyed
``<budget>x<sessions>``. Writes
benchmarks/results/embed_breakdown_<dev>.json.

    python3 benchmarks/embed_breakdown.py [--passages 150000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import corpora
import numpy as np
from embed import _chunker_ids
from harness import RESULTS, device_label, timed, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=150_000)
    parser.add_argument("--tokenise-only", action="store_true", help="skip inference (CPU runs)")
    parser.add_argument("--tokenizer-processes", type=int, nargs="*", default=[4, 7],
                        help="end-to-end encode with these tokeniser pools")
    parser.add_argument("--pool-budgets", type=int, nargs="*", default=[131072],
                        help="token budgets of the tokeniser-pool runs")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vecpress.infra.settings import ModelSettings
    from vecpress.tasks.embed.embedder import WINDOW, OnnxEmbedder
    from vecpress.tasks.embed.export import export_model
    from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir
    from vecpress.tasks.embed.tokenising import TokeniserPool

    texts = corpora.chunked_docstrings(args.passages, 126)
    artifact = export_model(read_model_spec(resolve_model_dir(None)), "fp16",
                            Path(tempfile.mkdtemp(prefix="breakdown-")), lambda: texts[:64])
    embedder = OnnxEmbedder(artifact, ModelSettings(max_batch_tokens=65536))
    n = len(texts)
    report: dict = {"device": embedder.device, "passages": n, "cpus": os.cpu_count()}
    report["encode_batch_per_s"] = n / timed(lambda: embedder._tok.encode_batch(texts))
    report["tokenise_to_numpy_per_s"] = n / timed(lambda: embedder._tokenise(texts))
    ids = _chunker_ids(artifact.model_dir, texts)  # what passage shards carry
    report["wrap_chunker_ids_per_s"] = n / timed(
        lambda: embedder.special_tokens.wrap(ids, artifact.max_seq_length))
    report["tokenise_to_numpy_per_s_with_processes"] = {}
    for processes in args.tokenizer_processes:
        pool = TokeniserPool(artifact.model_dir, artifact.max_seq_length, processes)
        pool.tokenise(texts[:1000])  # starts the processes
        report["tokenise_to_numpy_per_s_with_processes"][processes] = n / timed(
            lambda p=pool: p.tokenise(texts))
        pool.close()
    if args.tokenise_only:
        print(json.dumps(report, indent=2))
        write_results(RESULTS / f"embed_breakdown_tokenise_{device_label(embedder.device)}.json", report)
        return
    report["inference_only"] = {}
    for rows, seq in ((256, 128), (512, 128), (1024, 128)):
        feeds = {name: np.ones((rows, seq), np.int64) for name in artifact.input_names}
        for _ in range(3):
            embedder._run(feeds)
        seconds = timed(lambda f=feeds: [embedder._run(f) for _ in range(30)]) / 30
        report["inference_only"][f"{rows}x{seq}"] = rows / seconds
    report["encode_per_s"] = {}
    for budget in (32768, 65536, 131072, 262144):
        run = OnnxEmbedder(artifact, ModelSettings(max_batch_tokens=budget))
        run.encode(texts[:3000])
        report["encode_per_s"][budget] = n / timed(lambda r=run: r.encode(texts))
    # The ceiling once tokenising is free: batching, copies and inference on ids made beforehand.
    windows = [embedder._tokenise(texts[i:i + WINDOW]) for i in range(0, n, WINDOW)]
    report["encode_pretokenised_per_s"] = {}
    for budget, sessions in ((131072, 1), (262144, 1), (262144, 2), (262144, 3), (524288, 2)):
        run = OnnxEmbedder(artifact, ModelSettings(max_batch_tokens=budget, sessions=sessions))
        out = np.empty((n, artifact.dim), np.float32)
        run._encode_window(windows[0], 0, out, None, None)  # warm-up: the arena grows once
        report["encode_pretokenised_per_s"][f"{budget}x{sessions}"] = n / timed(
            lambda r=run, o=out: [r._encode_window(w, i * WINDOW, o, None, None)
                                  for i, w in enumerate(windows)])
        run.close()
    report["encode_per_s_with_tokenizer_processes"] = {}
    for budget in args.pool_budgets:
        for processes in args.tokenizer_processes:
            run = OnnxEmbedder(artifact, ModelSettings(max_batch_tokens=budget,
                                                     tokenizer_processes=processes))
            run.encode(texts[:3000])  # starts the processes
            report["encode_per_s_with_tokenizer_processes"][f"{processes}@{budget}"] = n / timed(
                lambda r=run: r.encode(texts))
            run.close()
    print(json.dumps(report, indent=2))
    write_results(RESULTS / f"embed_breakdown_{device_label(embedder.device)}.json", report)


if __name__ == "__main__":
    main()
