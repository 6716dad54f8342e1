"""One filtered search at a time on a collection ``filtered_recall.py`` ingested: what counting
the matches costs (the plan's first Milvus query) and the whole search, per filter, against the
same search without a filter. Writes benchmarks/results/filtered_latency_<backend>_<rows>.json.

With several ``--collections`` (the same passages reindexed with ``--typed-fields``, say), each
is measured in the same run and the file is ``..._<rows>_<name>_vs_<name>.json``:

    .venv/bin/python benchmarks/filtered_latency.py --root /tmp/vecpress-filtered-XXXX \
        [--variant int8] [--collections filtered filtered_typed]
"""

from __future__ import annotations

import argparse
import os
import time

from filtered_recall import FILTERS
from harness import RESULTS, machine, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--variant", default="fp32")
    parser.add_argument("--query", default="how do I read a file line by line")
    parser.add_argument("--collections", nargs="+", default=["filtered"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import vecpress
    from vecpress.infra.settings import Settings
    from vecpress.tasks.search.filters import translate

    measured, total = {}, 0
    for name in args.collections:
        settings = Settings(collection=name, storage_root=f"{args.root}/data",
                            milvus={"uri": f"{args.root}/data/milvus.db"},
                            model={"variant": args.variant})
        with vecpress.open_collection(name, f"{args.root}/data", settings=settings) as kb:
            measured[name] = {"typed_fields": kb.info().typed_fields,
                              "rows": _measure(kb, args.query, translate)}
            total = kb.count()
    backend = "server" if settings.milvus.uri.startswith("http") else "lite"
    suffix = "" if len(args.collections) == 1 else "_" + "_vs_".join(args.collections)
    write_results(RESULTS / f"filtered_latency_{backend}_{total}{suffix}.json", {
        "what": __doc__.splitlines()[0], "rows_in_collection": total, "variant": args.variant,
        **({"rows": measured[args.collections[0]]["rows"]} if len(args.collections) == 1
           else {"collections": measured}), "machine": machine()})


def _measure(kb, query_text: str, translate) -> list[dict]:  # type: ignore[no-untyped-def]
    store, collection = kb._searcher.store, kb._searcher.collection
    typed = frozenset(store.typed_fields(collection))
    query = kb.embed([query_text])
    rows = []
    for text in FILTERS:
        found = translate(text, True, 4096, typed)
        assert found is not None
        started = time.perf_counter()
        matches = store.count_matching(collection, found.expression)
        count_s = time.perf_counter() - started
        timings = []
        for wanted in (text, text, ""):  # first (keys checked), again, no filter
            started = time.perf_counter()
            kb.search_embeddings(query, 10, filter=wanted)
            timings.append(time.perf_counter() - started)
        rows.append({"filter": text, "matches": matches, "count_matches_s": round(count_s, 3),
                     "search_first_s": round(timings[0], 3),
                     "search_again_s": round(timings[1], 3),
                     "search_unfiltered_s": round(timings[2], 3)})
        print(collection, rows[-1], flush=True)
    return rows


if __name__ == "__main__":
    main()
