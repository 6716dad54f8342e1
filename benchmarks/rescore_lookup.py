"""What reading rescoring codes in place costs a search: the store's lookup against one copy.

The rescoring store (format 3) reads each candidate's codes from the archive shard that holds
them, through at most ``MAX_MAPS`` memory maps; before, it kept one contiguous copy of every code
and fancy-indexed it. This builds ``--shards`` local archive shards of SQ8 codes (PCA-``--dim``)
and times, per lookup of ``--candidates`` random pks (k x the rescore factor) and for one batch
lookup of 1,000 queries' candidates:

* ``copy``: the earlier store's access pattern, one memory-mapped array of every code (baseline);
* ``in place``: today's store: every shard mapped (``MAX_MAPS`` is above ``--shards``), and with
  a quarter of them mapped (the rest read with ``pread``, as past ``MAX_MAPS`` shards).

Warm page cache both ways (the shards are read once first): this is the CPU cost of the
indirection, not disk. Writes benchmarks/results/rescore_lookup_<label>.json.

    .venv/bin/python benchmarks/rescore_lookup.py [--shards 4000] [--rows 500] [--label cpu]
"""

from __future__ import annotations

import argparse
import shutil
import time

import numpy as np
from harness import BENCH_DIR, RESULTS, machine, write_results


def _per_lookup_us(lookup, probes: list[np.ndarray]) -> dict[str, float]:
    lookup(probes[0])
    times = []
    for probe in probes:
        started = time.perf_counter()
        lookup(probe)
        times.append((time.perf_counter() - started) * 1e6)
    return {"p50_us": round(float(np.percentile(times, 50)), 1),
            "p95_us": round(float(np.percentile(times, 95)), 1)}


def _batch_ms(lookup, batch: np.ndarray) -> float:
    """Best of three lookups of one batch."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        lookup(batch)
        times.append((time.perf_counter() - started) * 1e3)
    return round(min(times), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=4000)
    parser.add_argument("--rows", type=int, default=500)
    parser.add_argument("--dim", type=int, default=320)
    parser.add_argument("--candidates", type=int, default=80)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args()
    import faiss

    from vecpress.tasks.codec.refine import train_refiner, write_archive
    from vecpress.tasks.search import rescore_sources
    from vecpress.tasks.search.rescore_store import RescoreStore

    faiss.omp_set_num_threads(1)
    work = BENCH_DIR / "rescore_lookup"
    shutil.rmtree(work, ignore_errors=True)
    rng = np.random.default_rng(0)
    refiner = train_refiner("sq8", rng.standard_normal((5000, args.dim)).astype(np.float32))
    urls = []
    for shard in range(args.shards):
        pks = np.arange(args.rows, dtype=np.int64) + shard * args.rows
        vectors = rng.standard_normal((args.rows, args.dim)).astype(np.float32)
        url = str(work / "shards" / f"g{shard}" / f"archive-x-{shard:04d}.arrow")
        write_archive(url, pks, vectors, refiner)
        urls.append(url)
    total = args.shards * args.rows
    probes = [rng.integers(0, total, args.candidates) for _ in range(args.lookups)]
    batch = rng.integers(0, total, args.candidates * 1000)

    started = time.perf_counter()
    store = RescoreStore(urls, directory=work / "rescore")
    index_s = time.perf_counter() - started
    copy = np.lib.format.open_memmap(work / "copy.npy", "w+", np.uint8, (total, args.dim))
    for shard in range(args.shards):  # the earlier store: every code once more, contiguous
        copy[shard * args.rows:(shard + 1) * args.rows] = \
            store._sources._map(store._sources.sources[shard])[:]
    copy.flush()
    np.asarray(copy[:]).sum()  # warm every page of both
    store._sources.gather(np.arange(total, dtype=np.int64))

    def copied(pks: np.ndarray) -> np.ndarray:
        order = np.argsort(pks, kind="stable")
        out = np.empty((len(pks), args.dim), np.float32)
        out[order] = refiner.decode(copy[pks[order]])
        return out

    assert np.array_equal(copied(probes[0]), store.lookup(probes[0])[1])
    rows = []
    default_maps = rescore_sources.MAX_MAPS
    for name, maps in (("copy (baseline)", 0),
                       ("in place", default_maps),
                       ("in place, a quarter of the shards mapped", args.shards // 4)):
        rescore_sources.MAX_MAPS = maps or default_maps
        lookup = RescoreStore(urls, directory=work / "rescore").lookup if maps else copied
        batch_ms = _batch_ms(lookup, batch)
        rows.append({"store": name, "max_maps": maps, "shards_mapped": min(maps, args.shards),
                     **_per_lookup_us(lookup, probes), "batch_1000_queries_ms": batch_ms})
    base = rows[0]["p50_us"]
    print(f"{args.shards} shards x {args.rows} rows, PCA-{args.dim} sq8, {args.candidates} "
          f"candidates per lookup; index built in {index_s:.2f} s")
    print(f"{'store':42} {'mapped':>6} {'p50 µs':>8} {'p95 µs':>8} {'x copy':>7} "
          f"{'1000 q ms':>10}")
    for row in rows:
        row["p50_vs_copy"] = round(row["p50_us"] / base, 2)
        print(f"{row['store']:42} {row['shards_mapped']:>6} {row['p50_us']:>8} "
              f"{row['p95_us']:>8} {row['p50_vs_copy']:>7} {row['batch_1000_queries_ms']:>10}")
    write_results(RESULTS / f"rescore_lookup_{args.label}.json", {
        "machine": machine(), "shards": args.shards, "rows_per_shard": args.rows,
        "dim": args.dim, "candidates": args.candidates, "lookups": args.lookups,
        "index_build_s": round(index_s, 2),
        "store_bytes_per_passage": {
            "in place (index only)": round((store._pks.nbytes + store._locs.nbytes) / total, 1),
            "copy (index and codes)": round((store._pks.nbytes + copy.nbytes) / total, 1)},
        "rows": rows})
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
