"""Where the test suite's CPU goes, by kind of process: the basis for making `make test` faster.

Why: on this 2-core machine the suite runs CPU-bound (vmstat: 0-3 % idle through `pytest -n 2`;
`-n 3` was slower still), so its wall time falls only with the CPU work it does, and pytest's
durations cannot say which processes do that work: most of it is in the processes tests start
(CLI runs, Dask workers, servers). This runs a command (by default the README's test run) with a
``sitecustomize`` on PYTHONPATH that appends each Python process's argv, wall and CPU seconds to a
JSON-lines log when it exits; then it sums them per kind of process (the xdist and session Dask
workers, each `vecpress` subcommand, flow-run engines, ...) and writes
benchmarks/results/suite_cpu_<label>.json. Processes that end by SIGKILL or ``os._exit`` (killed
runs in the durability tests), the Prefect harness's server and Milvus' own binaries are not in
the log: the JSON states the logged share of the command's CPU.

    .venv/bin/python benchmarks/suite_cpu.py --label stop55
    .venv/bin/python benchmarks/suite_cpu.py --show /tmp/suite-cpu/log.jsonl --label stop55
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import subprocess
import time
from pathlib import Path

HOOK = '''import atexit, json, os, sys, time
_start = time.time()
def _vecpress_bench_log():
    try:
        t = os.times()
        with open(LOG, "a") as fh:
            fh.write(json.dumps({"argv": sys.argv[:3], "wall_s": time.time() - _start,
                                 "cpu_s": t.user + t.system}) + "\\n")
    except Exception:
        pass
atexit.register(_vecpress_bench_log)
'''


def kind(argv: list[str], wall_s: float) -> str:
    """A process's kind from its argv: `vecpress <subcommand>`, the long-lived ``-c`` processes
    (the xdist workers and the session's Dask workers, alive most of the run) or a short one."""
    first = argv[0] if argv else ""
    if first.endswith("vecpress/__main__.py") or first.endswith("bin/vecpress"):
        return f"vecpress {argv[1] if len(argv) > 1 else ''}".strip()
    if first == "-c":
        return "-c, long-lived (xdist and session Dask workers)" if wall_s > 300 else "-c, short"
    return first.rsplit("/", 1)[-1]


def summarise(log: Path, total_cpu_s: float | None, wall_s: float | None) -> dict:
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0, 0.0])
    for row in rows:
        entry = kinds[kind(row["argv"], row["wall_s"])]
        entry[0] += 1
        entry[1] += row["cpu_s"]
        entry[2] += row["wall_s"]
    logged = sum(row["cpu_s"] for row in rows)
    table = [{"kind": name, "processes": int(n), "cpu_s": round(cpu, 1),
              "cpu_s_each": round(cpu / n, 2), "wall_s_each": round(wall / n, 1)}
             for name, (n, cpu, wall) in sorted(kinds.items(), key=lambda kv: -kv[1][1])]
    return {"processes_logged": len(rows), "cpu_s_logged": round(logged, 1),
            "cpu_s_command": None if total_cpu_s is None else round(total_cpu_s, 1),
            "wall_s_command": None if wall_s is None else round(wall_s, 1), "kinds": table}


def run(command: list[str], hook_dir: Path) -> tuple[Path, float, float]:
    hook_dir.mkdir(parents=True, exist_ok=True)
    log = hook_dir / "log.jsonl"
    log.unlink(missing_ok=True)
    (hook_dir / "sitecustomize.py").write_text(f"LOG = {str(log)!r}\n" + HOOK)
    env = os.environ | {"PYTHONPATH": os.pathsep.join(
        p for p in (str(hook_dir), os.environ.get("PYTHONPATH", "")) if p)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run(command, env=env, check=False)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return log, cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True)
    parser.add_argument("--show", type=Path, help="summarise an existing log instead of running")
    parser.add_argument("--cpu-s", type=float, help="with --show: the command's CPU seconds")
    parser.add_argument("--wall-s", type=float, help="with --show: the command's wall seconds")
    parser.add_argument("--what", default="", help="what was run, where and when (kept in the JSON)")
    parser.add_argument("--hook-dir", type=Path, default=Path("/tmp/suite-cpu"))
    parser.add_argument("command", nargs="*", default=[".venv/bin/pytest", "-n", "2", "-q"])
    args = parser.parse_args()
    if args.show:
        log, cpu, wall = args.show, args.cpu_s, args.wall_s
    else:
        log, cpu, wall = run(args.command, args.hook_dir)
    result = {"what": args.what or " ".join(args.command)} | summarise(log, cpu, wall)
    print(f"{'cpu-s':>8} {'procs':>5} {'each':>6} {'wall each':>9}  kind")
    for row in result["kinds"][:20]:
        print(f"{row['cpu_s']:8.1f} {row['processes']:5d} {row['cpu_s_each']:6.2f} "
              f"{row['wall_s_each']:9.1f}  {row['kind']}")
    print(f"logged {result['cpu_s_logged']} cpu-s of the command's {result['cpu_s_command']}")
    out = Path(__file__).parent / "results" / f"suite_cpu_{args.label}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
