"""Chunking a document with one huge paragraph (a book or log without blank lines), before and
after tokenising long paragraphs in pieces, in the same run, with the same passages.

A paragraph is one string to ``encode_batch``; one 5 MB string runs on one tokenizer thread and
costs about twice per token what short strings do. The chunker now cuts a paragraph longer than
``chunking.PIECE_CHARS`` at whitespace and joins the pieces' offsets. "before" is the same code
with the cut disabled (``PIECE_CHARS`` larger than the text). Each configuration runs
``--repeats`` times (best kept), with the packaged model's tokenizer, and a cProfile of one
"before" call names where the time goes. Writes benchmarks/results/chunk_long_paragraph.json.

    python3 benchmarks/chunk_long.py [--megabytes 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import itertools
import os
import pstats
import time

from harness import RESULTS, machine, write_results


def _profile_top(fn, n: int = 6) -> list[dict]:
    profile = cProfile.Profile()
    profile.runcall(fn)
    stats = pstats.Stats(profile, stream=io.StringIO())
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]  # own time
    return [{"function": f"{path.rsplit('/', 1)[-1]}:{line}({name})", "own_s": round(tt, 3)}
            for (path, line, name), (_, _, tt, _, _) in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vecpress.infra.settings import ChunkSettings
    from vecpress.tasks.embed.model_files import load_tokenizer, resolve_model_dir
    from vecpress.tasks.inputs import chunking
    from vecpress.tasks.inputs.corpus import stdlib_docstring_paragraphs

    words = " ".join(t for _, t in itertools.islice(stdlib_docstring_paragraphs(), 400)).split()
    text = " ".join(words * (int(args.megabytes * 1e6) // (len(" ".join(words)) + 1) + 1))
    chunker = chunking.Chunker(load_tokenizer(resolve_model_dir(None)), ChunkSettings())
    piece = chunking.PIECE_CHARS
    best: dict[str, float] = {}
    outputs = {}
    for label, size in (("before (one string)", len(text) + 1), ("after (pieces)", piece)):
        chunking.PIECE_CHARS = size
        for _ in range(args.repeats):
            started = time.perf_counter()
            outputs[label] = chunker.passages(text)
            best[label] = min(best.get(label, 1e9), time.perf_counter() - started)
    chunking.PIECE_CHARS = len(text) + 1
    top_before = _profile_top(lambda: chunker.passages(text))
    chunking.PIECE_CHARS = piece
    before, after = best["before (one string)"], best["after (pieces)"]
    same = outputs["before (one string)"] == outputs["after (pieces)"]
    result = {"what": __doc__.split("\n\n")[0], "machine": machine("tokenizers"),
              "characters": len(text), "passages": len(outputs["after (pieces)"]),
              "piece_chars": piece, "same_passages_and_ids": same,
              "seconds_best_of": args.repeats, "seconds": best, "speedup": round(before / after, 2),
              "profile_before_top_own_time": top_before}
    print(f"{len(text):,} characters, {result['passages']:,} passages, same output: {same}")
    for label, seconds in best.items():
        print(f"  {label:22s} {seconds:6.2f} s")
    print(f"  speed-up {result['speedup']}x; before, own time: {top_before[:2]}")
    write_results(RESULTS / "chunk_long_paragraph.json", result)


if __name__ == "__main__":
    main()
