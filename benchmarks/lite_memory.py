"""How much of the flow process's peak memory on Milvus Lite is the Lite collection itself.

Milvus Lite 3 runs inside the process that opens it (the ingest's flow process) and keeps every
segment of a collection decoded in memory from the moment the collection is opened (its
``Segment``: the Arrow table, the vectors as numpy, a Python key map), whether loaded or not. So
the flow's RSS grows with the collection by design of the engine. This separates the two: each
Lite file a scale run left (``data/bench/scale/runs/lite-<N>/milvus.db``, from
``scale.py --milvus lite``) is opened in a fresh process, its collections loaded and counted,
and the RSS that adds is Lite's resident collection; the run's own footprint report (what Lite
holds, as ``infra.milvus_sizes`` counts it) and the flow's peak from the scale JSON stand beside.

    .venv/bin/python benchmarks/lite_memory.py --scale-json \
        benchmarks/results/scale_nano_lite_100000_1000000_stop48.json

Writes benchmarks/results/lite_memory.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness import RESULTS, ROOT, machine, probe, write_results
from ingest_runs import summary_of

PROBE = """
import json, sys, time, psutil
me = psutil.Process()
import faiss, pyarrow.compute, milvus_lite.db  # code the flow has imported too
from vecpress.infra import lite_engine, lite_arrow
lite_arrow.flush_in_columns()
before = me.memory_info().rss
started = time.perf_counter()
engine = lite_engine.open_engine(sys.argv[1])
rows = 0
for name in engine.db.list_collections():
    engine.load(name)
    rows += engine.count(name, "", "pk")
print(json.dumps({"rows": rows, "resident_mb": (me.memory_info().rss - before) >> 20,
                  "open_load_count_s": round(time.perf_counter() - started, 2)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale-json", required=True, help="a scale.py --milvus lite result")
    args = parser.parse_args()
    scale = json.loads(Path(args.scale_json).read_text())
    rows = {}
    for size, run in scale["sizes"].items():
        work = ROOT / Path(run["logs"]).parent
        db = work / "milvus.db"
        if not db.exists():
            print(f"{size}: {db} is gone (run scale.py again)")
            continue
        footprint = summary_of((ROOT / run["logs"] / "stdout.txt").read_text())["footprint"]
        ram = footprint["tiers"]["RAM while serving"]["bytes"]
        lite_counted = sum(v for k, v in ram.items() if "memory-mapped" not in k) >> 20
        resident = probe(PROBE, str(db))  # its collections loaded, in a fresh process
        flow = run["peak_rss_mb"]["flow"]
        rows[size] = {"passages": run["passages"], "flow_peak_mb": flow,
                      "lite_resident_mb": resident["resident_mb"],
                      "lite_own_footprint_mb": lite_counted,
                      "flow_less_lite_resident_mb": flow - resident["resident_mb"],
                      "open_load_count_s": resident["open_load_count_s"]}
        print(size, rows[size], flush=True)
    sizes = sorted(rows, key=int)
    ratios = {}
    if len(sizes) > 1:
        low, high = rows[sizes[0]], rows[sizes[-1]]
        ratios = {key: round(high[key] / low[key], 2) for key in
                  ("flow_peak_mb", "lite_resident_mb", "flow_less_lite_resident_mb")}
    write_results(RESULTS / "lite_memory.json", {
        "what": __doc__.split("\n\n")[0], "machine": machine(git=True),
        "scale_json": args.scale_json, "sizes": rows, f"ratios_{sizes[-1]}_over_{sizes[0]}":
        ratios})


if __name__ == "__main__":
    main()
