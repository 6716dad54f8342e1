"""Counting a filter on Milvus Lite: a record per matching row (Lite's ``query``, what
``LiteEngine.count`` did) against the engine's mask counted (``infra/lite_count.py``), and a
metadata key's existence by a count against a one-row query (``filters.check_keys``).

Each way runs in a fresh process opened on a Lite file a scale run left (default: the 1M-passage
one of ``scale.py --milvus lite``), so its peak RSS growth is its own.

    .venv/bin/python benchmarks/lite_count.py [--db data/bench/scale/runs/lite-1000000/milvus.db]

Writes benchmarks/results/lite_count.json.
"""

from __future__ import annotations

import argparse

from harness import RESULTS, machine, probe, write_results

PROBE = """
import json, resource, sys, time
import faiss, pyarrow.compute, milvus_lite.db  # code a search process has imported too
from vecpress.infra import lite_count, lite_engine
engine = lite_engine.open_engine(sys.argv[1])
name = engine.db.list_collections()[0]
engine.load(name)
collection = engine.db.get_collection(name)
way, where = sys.argv[2], sys.argv[3]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
if way == "query":
    n = len(collection.query(where, output_fields=["pk"]))
elif way == "mask":
    n = lite_count.count_matching(collection, where)
else:  # one row
    n = len(collection.query(where, output_fields=["pk"], limit=1))
seconds = time.perf_counter() - started
grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) >> 10
print(json.dumps({"rows": engine.count(name, "", "pk"), "result": n,
                  "seconds": round(seconds, 2), "peak_rss_growth_mb": grew}))
"""
CASES = [("every row", "chunk >= 0", ("query", "mask")),
         ("each document's first passage", "chunk == 0", ("query", "mask")),
         ("no row", "pk < 0", ("query", "mask")),
         # the scale corpus keeps no metadata: a key no row has (a typo's case), which Lite
         # decides by parsing every row's JSON, whichever way
         ("a metadata key no row has", 'exists metadata["kind"]', ("query", "mask", "one row"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="data/bench/scale/runs/lite-1000000/milvus.db")
    args = parser.parse_args()
    rows = []
    for label, where, ways in CASES:
        for way in ways:
            rows.append({"filter": label, "expression": where, "way": way} |
                        probe(PROBE, args.db, way, where))
            print(rows[-1], flush=True)
    write_results(RESULTS / "lite_count.json", {
        "what": __doc__.split("\n\n")[0], "machine": machine("milvus_lite", git=True),
        "db": args.db, "runs": rows})


if __name__ == "__main__":
    main()
