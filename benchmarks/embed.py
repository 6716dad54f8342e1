"""Embedding throughput and fidelity: sentence-transformers torch vs vecpress ONNX variants.

Same texts, same machine, same run. Texts are real passages with a realistic length mix: standard
library docstrings grouped per module and chunked by vecpress's token-aware chunker (≤192 tokens on
CPU; ≤126 + 2 special tokens on CUDA, the ~128-token passages of the GPU target). Each engine runs
in its own subprocess so that peak RSS is its own. Prints a table and writes
benchmarks/results/embed_<device>.json.

CPU (default when torch sees no GPU): baseline sentence-transformers torch FP32 vs ONNX fp32 / int8
(add onnx-fp16 with --engines to see fp16 on the CPU provider). CUDA: baseline sentence-transformers
torch FP16 on the GPU vs ONNX fp16 on the CUDA provider with IO binding (needs onnxruntime-gpu).
An engine named ``onnx-<variant>-ids`` embeds the same passages from their token ids as the chunk
stage stores them in passage shards (made before the timer starts: the pipeline tokenises once, at
chunking); plain ``onnx-<variant>`` starts from the text.

    .venv/bin/python benchmarks/embed.py [--passages 1500] [--threads 2] [--device auto|cpu|cuda]
        [--batch-tokens N] [--tokenizer-processes N] [--sessions N] [--engines ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import corpora
import numpy as np
from harness import (
    MODEL_CACHE,
    RESULTS,
    Stopwatch,
    cpu_seconds,
    device_label,
    own_peak_rss_mb,
    timed,
    write_results,
)


def whole_command(variant: str, texts: list[str], work: Path, repeats: int = 1) -> dict:
    """Wall seconds of the user's command, `vecpress embed FILE --variant V`, start-up included
    (model cache warm: one untimed run first), and its vectors."""
    exe = str(Path(sys.executable).with_name("vecpress"))
    source = corpora.write_jsonl(work / "texts.jsonl",
                                 ({"id": str(i), "text": t} for i, t in enumerate(texts)))
    out = work / f"cli-{variant}.npy"
    cmd = [exe, "embed", str(source), "--variant", variant, "--out", str(out),
           "--storage-root", str(work / "cli")]
    # the artifacts export_for made: the command finds them in its cache, as a user's second run
    env = os.environ | {"VECPRESS_MODEL__CACHE_DIR": str(MODEL_CACHE)}
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    times = [timed(lambda: subprocess.run(cmd, check=True, capture_output=True, env=env))
             for _ in range(repeats)]
    return {"seconds": min(times), "vectors": np.load(out)}


def run_engine(engine: str, texts_file: str, out_file: str, threads: int, artifact_dir: str,
               device: str, batch_tokens: int, tokenizer_processes: int, sessions: int) -> None:
    """Child process: embed the texts with one engine, save vectors, print timing JSON."""
    texts = json.loads(Path(texts_file).read_text())
    if engine.startswith("st-torch"):
        import torch
        from sentence_transformers import SentenceTransformer

        from vecpress.tasks.embed.model_files import resolve_model_dir

        torch.set_num_threads(threads)
        model = SentenceTransformer(str(resolve_model_dir(None)), device=device)
        if engine.endswith("fp16"):
            model.half()
        batch = 32 if device == "cpu" else 512  # 512 × ~128 tokens: the ONNX budget on CUDA
        model.encode(texts[:batch])  # warm-up
        clock, cpu_started = Stopwatch(), cpu_seconds()
        vectors = model.encode(texts, batch_size=batch, normalize_embeddings=True)
        if device == "cuda":
            torch.cuda.synchronize()
    else:  # artifact_dir holds the exported artifact's directory: no torch in this process
        from vecpress.infra.settings import ModelSettings
        from vecpress.tasks.embed.artifact import ModelArtifact
        from vecpress.tasks.embed.embedder import OnnxEmbedder

        model = ModelSettings(max_batch_tokens=batch_tokens, tokenizer_processes=tokenizer_processes,
                              sessions=sessions)
        embedder = OnnxEmbedder(ModelArtifact.load(Path(artifact_dir)), model, threads=threads)
        if embedder.device != device:
            raise SystemExit(f"{engine}: ran on {embedder.device}, expected {device}")
        embedder.encode(texts[:256])  # warm-up
        if engine.endswith("-ids"):  # the pipeline's way: ids from the chunker, read from a shard
            ids = _chunker_ids(embedder.artifact.model_dir, texts)
            clock, cpu_started = Stopwatch(), cpu_seconds()
            vectors = embedder.encode_tokens(embedder.special_tokens.wrap(
                ids, embedder.artifact.max_seq_length))
        else:
            clock, cpu_started = Stopwatch(), cpu_seconds()
            vectors = embedder.encode(texts)
    seconds, cpu_used = clock.seconds, cpu_seconds() - cpu_started
    np.save(out_file, np.asarray(vectors, dtype=np.float32))
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_used, "peak_rss_mb": own_peak_rss_mb()}))


def _chunker_ids(model_dir: str, texts: list[str]):
    """The passages' token ids as the chunk stage stores them (content only, list<int32>)."""
    import pyarrow as pa

    from vecpress.tasks.embed.model_files import load_tokenizer
    from vecpress.tasks.embed.tokenising import bare_tokenizer

    tok = bare_tokenizer(load_tokenizer(Path(model_dir)))
    return pa.array([e.ids for e in tok.encode_batch(texts, add_special_tokens=False)],
                    pa.list_(pa.int32()))


def export_for(engine: str, cache: Path, probe: list[str]) -> str:
    """Export ONNX variants here, so the timed child process loads only ONNX Runtime."""
    if not engine.startswith("onnx-"):
        return ""
    from vecpress.tasks.embed.export import export_model
    from vecpress.tasks.embed.model_files import read_model_spec, resolve_model_dir

    # Measure every variant; whether it passes the default fidelity gate is reported below.
    artifact = export_model(read_model_spec(resolve_model_dir(None)), engine.split("-")[1], cache,
                            lambda: probe, min_cosine=0.0)
    return str(Path(artifact.onnx_path).parent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--engines", nargs="+", help="first one is the baseline; default per device")
    parser.add_argument("--batch-tokens", type=int, help="ONNX token budget (default 8192 CPU, "
                        "524288 CUDA)")
    parser.add_argument("--label", default="", help="file name suffix, e.g. _tok7")
    parser.add_argument("--corpus", default="docstrings-chunked",
                        help="docstrings-chunked (stdlib docstrings through the chunker), or a "
                             "corpus of benchmarks/corpora.py: docstrings, descriptions, "
                             "summaries, fortunes (texts cut to 120 words)")
    parser.add_argument("--whole-command", action="store_true",
                        help="also time `vecpress embed` (start-up included) per ONNX variant")
    parser.add_argument("--tokenizer-processes", type=int, default=0,
                        help="ONNX engines tokenise in this many processes (model.tokenizer_processes)")
    parser.add_argument("--sessions", type=int, help="ONNX engines run this many sessions "
                        "concurrently (model.sessions; default 1 CPU, 2 CUDA)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    engines = args.engines or (["st-torch-fp32", "onnx-fp32", "onnx-int8"] if device == "cpu"
                               else ["st-torch-fp16", "st-torch-fp32", "onnx-fp16", "onnx-fp16-ids"])
    from vecpress.infra.model_settings import GPU_DEFAULTS
    from vecpress.tasks.embed.embedder import IDS_WINDOW, WINDOW

    batch_tokens = args.batch_tokens or (8192 if device == "cpu" else GPU_DEFAULTS["max_batch_tokens"])
    sessions = args.sessions or (1 if device == "cpu" else GPU_DEFAULTS["sessions"])

    from rich.console import Console
    from rich.table import Table

    from vecpress.tasks.embed.export import FIDELITY_FLOORS
    from vecpress.tasks.recall import neighbour_recall

    texts = corpora.chunked_docstrings(args.passages, 192 if device == "cpu" else 126) \
        if args.corpus == "docstrings-chunked" else corpora.cut_passages(args.corpus, args.passages)
    work = Path(tempfile.mkdtemp(prefix="embed-bench-"))
    (work / "texts.json").write_text(json.dumps(texts))
    results: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    for engine in engines:
        out = work / f"{engine}.npy"
        artifact_dir = export_for(engine, MODEL_CACHE, texts[:64])
        proc = subprocess.run([sys.executable, __file__, "--child", engine, str(work / "texts.json"),
                               str(out), str(args.threads), artifact_dir, device,
                               str(batch_tokens), str(args.tokenizer_processes),
                               str(sessions)],
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{engine} failed:\n{proc.stderr[-3000:]}")
        results[engine] = json.loads(proc.stdout.strip().splitlines()[-1])
        vectors[engine] = np.load(out)

    if args.whole_command:
        for engine in [e for e in engines if e.startswith("onnx-") and not e.endswith("-ids")]:
            run = whole_command(engine.split("-")[1], texts, work)
            results[f"vecpress embed --variant {engine.split('-')[1]}"] = {
                "seconds": run["seconds"], "cpu_seconds": float("nan"), "peak_rss_mb": float("nan"),
                "whole_command": True}
            vectors[f"vecpress embed --variant {engine.split('-')[1]}"] = run["vectors"]

    base_name = engines[0]
    # Fidelity is always against sentence-transformers FP32 when it ran (on a GPU the speed
    # baseline is FP16, itself an approximation).
    reference_name = "st-torch-fp32" if "st-torch-fp32" in vectors else base_name
    reference = vectors[reference_name]
    base_rate = len(texts) / results[base_name]["seconds"]
    # Neighbour recall on ≤5,000 distinct passages (GPU runs repeat texts; k-NN is quadratic).
    distinct = list(dict.fromkeys(texts))[:5000]
    first = {t: i for i, t in reversed(list(enumerate(texts)))}
    knn_rows = np.array([first[t] for t in distinct])
    for engine, res in results.items():
        cos = np.sum(reference * vectors[engine], axis=1) / (
            np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors[engine], axis=1))
        res |= {"passages_per_s": len(texts) / res["seconds"],
                "ratio_to_baseline": len(texts) / res["seconds"] / base_rate,
                "passages_per_cpu_s": len(texts) / res["cpu_seconds"],
                "cpu_ratio_to_baseline": results[base_name]["cpu_seconds"] / res["cpu_seconds"],
                "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                "neighbour_recall@10": neighbour_recall(reference[knn_rows],
                                                        vectors[engine][knn_rows])}
        variant = engine.split()[-1] if engine.startswith("vecpress") else engine.split("-")[1]
        if engine.startswith(("onnx-", "vecpress")) and variant in FIDELITY_FLOORS:
            res["default_gate_min_cosine"] = FIDELITY_FLOORS[variant]
            res["passes_default_gate"] = res["min_cosine"] >= FIDELITY_FLOORS[variant]

    from vecpress.tasks.embed.model_files import load_tokenizer, resolve_model_dir
    from vecpress.tasks.embed.tokenising import bare_tokenizer

    tok = bare_tokenizer(load_tokenizer(resolve_model_dir(None)))
    lengths = [len(e.ids) for e in tok.encode_batch(texts)]
    table = Table(title=f"{len(texts)} passages (tokens p10/p50/p90 "
                        f"{np.percentile(lengths, 10):.0f}/{np.percentile(lengths, 50):.0f}/"
                        f"{np.percentile(lengths, 90):.0f}), {args.threads} threads, baseline "
                        f"{base_name}, fidelity vs {reference_name}")
    for col in ("engine", "passages/s", "× baseline", "× (CPU s)", "peak RSS MB", "min cos", "mean cos",
                "nR@10"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for engine, r in results.items():
        table.add_row(engine, f"{r['passages_per_s']:.1f}", f"{r['ratio_to_baseline']:.2f}",
                      f"{r['cpu_ratio_to_baseline']:.2f}",
                      f"{r['peak_rss_mb']:.0f}", f"{r['min_cosine']:.4f}",
                      f"{r['mean_cosine']:.4f}", f"{r['neighbour_recall@10']:.3f}")
    Console().print(table)

    import onnxruntime

    report = {"device": device, "threads": args.threads, "cpus": os.cpu_count(),
              "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
              "onnxruntime_providers": onnxruntime.get_available_providers(),
              "onnx_batch_tokens": batch_tokens, "onnx_tokenizer_processes": args.tokenizer_processes,
              "onnx_sessions": sessions, "encode_window": {"text": WINDOW, "ids": IDS_WINDOW},
              "platform": platform.platform(), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "passages": len(texts),
              "corpus": args.corpus,
              "token_lengths": {"p10": float(np.percentile(lengths, 10)),
                                "p50": float(np.percentile(lengths, 50)),
                                "p90": float(np.percentile(lengths, 90)),
                                "mean": float(np.mean(lengths))},
              "baseline": base_name, "fidelity_reference": reference_name, "engines": results,
              "note": "CPU absolute timings are for orientation; compare ratios within this run. "
              "cpu_ratio_to_baseline compares CPU seconds used, which other load on a shared "
              "machine distorts less than wall time." if
              device == "cpu" else "GPU run: absolute passages/s are meaningful for this GPU."}
    write_results(RESULTS / f"embed{args.label}_{device_label(device)}.json", report)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        run_engine(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7],
                   int(sys.argv[8]), int(sys.argv[9]), int(sys.argv[10]))
    else:
        main()
