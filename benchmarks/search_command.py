"""`vecpress search` of one query as a user runs it, this code against an earlier revision.

One 20-note collection is ingested (packaged model, Milvus Lite, ``--no-server``); then the same
search command runs with each code version in turn (alternating, ``--repeats`` times each), in the
same session, so the ratio compares like with like. For each version: the wall-time median, and
which heavy modules the search process imported (pymilvus, grpc, pandas) with the import time of
each (``python -X importtime``, one extra run). Writes
benchmarks/results/search_command_<label>.json.

    python3 benchmarks/search_command.py --before /tmp/x/before [--repeats 5] [--label stop42]

``--before`` is a checkout of the earlier revision (``git worktree add /tmp/x/before REV``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from commands import _notes
from harness import RESULTS, ROOT, Stopwatch, machine, write_results

QUERY = "when is the index rebuilt"
HEAVY = ("pymilvus", "grpc", "pandas")


def _search(code: Path, env: dict, folder: Path, *python_flags: str) -> subprocess.CompletedProcess:
    """The search command, run from ``code`` (its sources first on the path)."""
    program = ("import sys\nfrom vecpress.cli import app\nsys.argv[0] = 'vecpress'\ntry:\n"
               f"    app()\nfinally:\n    print('LOADED', *(m for m in {HEAVY!r} "
               "if m in sys.modules), file=sys.stderr)")
    return subprocess.run([sys.executable, *python_flags, "-c", program, "search", QUERY],
                          env=env | {"PYTHONPATH": str(code)}, cwd=folder, capture_output=True,
                          text=True, check=True)


def _imports(code: Path, env: dict, folder: Path) -> dict[str, float]:
    """Seconds spent importing each heavy module the search ended with (and what it pulled in)."""
    lines = _search(code, env, folder, "-X", "importtime").stderr.splitlines()
    loaded = next(line.split()[1:] for line in lines if line.startswith("LOADED"))
    out = {}
    for line in lines:
        if line.startswith("import time:") and line.count("|") == 2:
            _, cumulative, name = line.split("|")
            if name.strip() in loaded and cumulative.strip().isdigit():
                out[name.strip()] = round(int(cumulative) / 1e6, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="cpu")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="search-command-"))
    _notes(folder / "notes", 20)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "VECPRESS_"))}
    env |= {"HF_HUB_OFFLINE": "1"}
    vecpress = str(Path(sys.executable).with_name("vecpress"))
    subprocess.run([vecpress, "ingest", "notes", "--no-server"], env=env, cwd=folder,
                   capture_output=True, check=True)
    versions = {"before": args.before.resolve(), "after": ROOT}
    runs: dict[str, list[float]] = {name: [] for name in versions}
    outputs = {}
    for _ in range(args.repeats):
        for name, code in versions.items():
            clock = Stopwatch()
            outputs[name] = _search(code, env, folder).stdout
            runs[name].append(round(clock.seconds, 3))
    rows = {name: {"median_s": round(statistics.median(runs[name]), 3), "runs": runs[name],
                   "imported": _imports(code, env, folder)} for name, code in versions.items()}
    result = {"what": __doc__.split("\n\n")[0], "machine": machine(git=True),
              "before": subprocess.run(["git", "-C", str(args.before), "rev-parse", "--short",
                                        "HEAD"], capture_output=True, text=True).stdout.strip(),
              "repeats": args.repeats, "rows": rows,
              "same_results": outputs["before"] == outputs["after"],
              "after_over_before": round(rows["after"]["median_s"] / rows["before"]["median_s"], 3)}
    for name, row in rows.items():
        print(f"{name:7s} {row['median_s']:6.3f} s  imported: {row['imported'] or 'none of them'}")
    print(f"after ÷ before: {result['after_over_before']}; same results: {result['same_results']}")
    write_results(RESULTS / f"search_command_{args.label}.json", result)


if __name__ == "__main__":
    main()
