"""What the benchmark models cost ONNX Runtime on one CPU core, per token and per passage.

Why: the scale and profile benchmarks stand in a small random BERT for "embedding is nearly free,
as on a GPU box". Whether it is depends on its shape: this times ``Session.run`` of each shape in
``harness.SHAPES`` (exported as `vecpress` exports it, fp32, fused), one intra-op thread, on
random token ids at batches of 128 × 64 and 64 × 128 tokens, against the tokenizer's own cost
(``encode_batch`` of real passages, one thread, µs per token).

    .venv/bin/python benchmarks/model_cost.py

Results: benchmarks/results/model_cost_cpu.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # the tokenizer on one thread, as the model

import harness
import numpy as np
import onnxruntime as ort

SHAPES = [(128, 64), (64, 128)]
REPEATS = 20


def session_us(path: str, rows: int, length: int) -> float:
    """µs per passage of ``Session.run`` on a ``rows`` × ``length`` batch, one thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(1000, 30000, (rows, length), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids),
             "token_type_ids": np.zeros_like(ids)}
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}
    session.run(None, feeds)
    started = time.perf_counter()
    for _ in range(REPEATS):
        session.run(None, feeds)
    return 1e6 * (time.perf_counter() - started) / REPEATS / rows


def tokenizer_us_per_token() -> float:
    """µs per token of ``encode_batch`` (no special tokens) over 20k real docstring passages."""
    from pipeline import corpus
    from tokenizers import Tokenizer

    model_dir = harness.model_env("tiny", "fp32")["VECPRESS_MODEL__PATH"]
    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    texts = [json.loads(line)["text"] for part in sorted(corpus(20_000).glob("*.jsonl"))
             for line in part.open(encoding="utf-8")]
    started = time.perf_counter()
    encoded = tok.encode_batch(texts, add_special_tokens=False)
    seconds = time.perf_counter() - started
    return 1e6 * seconds / sum(len(e.ids) for e in encoded)


def main() -> None:
    result: dict = {"machine": harness.machine("onnxruntime", git=True), "threads": 1,
                    "models": {}}
    for name, (hidden, heads, intermediate) in harness.SHAPES.items():
        artifact = harness.export_env_model(harness.model_env(name, "fp32"))
        row: dict = {"hidden": hidden, "heads": heads, "intermediate": intermediate}
        for rows, length in SHAPES:
            us = session_us(artifact.onnx_path, rows, length)
            row[f"{rows}x{length}"] = {"us_per_passage": round(us, 1),
                                       "ns_per_token": round(1e3 * us / length)}
        result["models"][name] = row
    result["tokenizer_ns_per_token"] = round(1e3 * tokenizer_us_per_token())
    print(f"{'model':6} {'batch':>8} {'µs/passage':>11} {'ns/token':>9}")
    for name, row in result["models"].items():
        for rows, length in SHAPES:
            cell = row[f"{rows}x{length}"]
            print(f"{name:6} {rows:>4}×{length:<3} {cell['us_per_passage']:11.1f} "
                  f"{cell['ns_per_token']:9}")
    print(f"tokenizer encode_batch, one thread: {result['tokenizer_ns_per_token']} ns/token")
    harness.write_results(harness.RESULTS / "model_cost_cpu.json", result)


if __name__ == "__main__":
    main()
