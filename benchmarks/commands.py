"""Whole commands as a new user runs them, in a new folder: wall time, median of ``--repeats``.

- ``vecpress --help``;
- the first ``vecpress ingest`` of 20 short notes with the packaged model, its ONNX export
  included (each repeat in a new folder with an empty model cache);
- one new note, ingested again into the 20-note collection, three ways in the same run: the
  shared local Prefect server (``vecpress server``, up since the first ingest) with the small
  run's stages in the flow's process (``dask.in_process_bytes``, 256 KiB by default); the same
  with Prefect's flow-run heartbeats asked for (its default, which a run of ours turns off unless
  asked); the same with local worker processes; and ``--no-server`` with worker processes (a
  temporary Prefect API per command: what every ingest did before), the baseline, twice: its
  server started from the migrated database template (``server.database_templates``, made by
  the local server's first start) and, as before templates, migrating an empty database;
- ``vecpress search`` of one query.

No PREFECT_API_URL: the local server gets its own home and a free port, and is stopped at the
end. Writes benchmarks/results/commands_cpu_<cores>core.json.

    python3 benchmarks/commands.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import RESULTS, Stopwatch, device_label, machine, write_results

TARGETS = {"help": 0.3, "first ingest (20 notes, export included)": 25.0,
           "one-file incremental ingest (local server)": 5.0, "search (one query)": 1.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notes(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        (folder / f"note-{i:03d}.txt").write_text(
            f"Note {i}. The team met on day {i} to review the storage budget. Disk use grew by "
            f"{i % 7} percent; the archive moves to colder storage next quarter, and the index "
            f"is rebuilt every {1 + i % 3} weeks.\n")


def _run(cmd: list[str], env: dict, cwd: Path) -> float:
    clock = Stopwatch()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-3000:]}")
    return clock.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    vecpress = str(Path(sys.executable).with_name("vecpress"))
    base = Path(tempfile.mkdtemp(prefix="commands-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API_", "VECPRESS_"))}
    env |= {"VECPRESS_SERVER_HOME": str(base / "prefect-server"),
            "VECPRESS_SERVER_DATABASE_TEMPLATES": str(base / "prefect-templates"),
            "VECPRESS_SERVER_PORT": str(_free_port()), "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {k: [] for k in (
        "help", "first ingest (20 notes, export included)",
        "one-file incremental ingest (local server)",
        "one-file incremental ingest (local server, Prefect flow heartbeats on)",
        "one-file incremental ingest (local server, worker processes)",
        "one-file incremental ingest (--no-server, temporary API)",
        "one-file incremental ingest (--no-server, temporary API, no template)",
        "search (one query)")}
    processes = env | {"VECPRESS_DASK__IN_PROCESS_BYTES": "0"}
    heartbeats = env | {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "180"}  # Prefect's default, asked for
    try:
        for _ in range(args.repeats):
            times["help"].append(_run([vecpress, "--help"], env, base))
        for r in range(args.repeats):  # each in a new folder: empty model cache, new collection
            folder = base / f"first-{r}"
            _notes(folder / "notes", 20)
            times["first ingest (20 notes, export included)"].append(
                _run([vecpress, "ingest", "notes"], env, folder))
        folder = base / "first-0"
        for r in range(args.repeats):
            _notes(folder / "notes", 1, start=100 + r)
            times["one-file incremental ingest (local server)"].append(
                _run([vecpress, "ingest", "notes"], env, folder))
            _notes(folder / "notes", 1, start=500 + r)
            times["one-file incremental ingest (local server, Prefect flow heartbeats on)"].append(
                _run([vecpress, "ingest", "notes"], heartbeats, folder))
            _notes(folder / "notes", 1, start=200 + r)
            times["one-file incremental ingest (local server, worker processes)"].append(
                _run([vecpress, "ingest", "notes"], processes, folder))
            _notes(folder / "notes", 1, start=300 + r)
            times["one-file incremental ingest (--no-server, temporary API)"].append(
                _run([vecpress, "ingest", "notes", "--no-server"], processes, folder))
            _notes(folder / "notes", 1, start=400 + r)
            times["one-file incremental ingest (--no-server, temporary API, no template)"].append(
                _run([vecpress, "ingest", "notes", "--no-server"],
                     processes | {"VECPRESS_SERVER_DATABASE_TEMPLATES": ""}, folder))
            times["search (one query)"].append(
                _run([vecpress, "search", "when is the index rebuilt"], env, folder))
    finally:
        subprocess.run([vecpress, "server", "stop"], env=env, capture_output=True)
    rows = {name: {"median_s": round(statistics.median(t), 2), "runs": [round(x, 2) for x in t],
                   "target_s": TARGETS.get(name)} for name, t in times.items()}
    local = rows["one-file incremental ingest (local server)"]["median_s"]
    temporary = rows["one-file incremental ingest (--no-server, temporary API)"]["median_s"]
    untemplated = rows["one-file incremental ingest (--no-server, temporary API, no template)"][
        "median_s"]
    result = {"what": __doc__.split("\n\n")[0], "machine": machine(git=True),
              "repeats": args.repeats, "rows": rows,
              "incremental_local_over_temporary": round(local / temporary, 3),
              "temporary_with_template_over_without": round(temporary / untemplated, 3)}
    for name, row in rows.items():
        target = f"(target ≤ {row['target_s']} s)" if row["target_s"] else ""
        print(f"{name:58s} {row['median_s']:7.2f} s {target}")
    print(f"incremental ingest, local server ÷ temporary API: "
          f"{result['incremental_local_over_temporary']}")
    write_results(RESULTS / f"commands_{device_label('cpu')}.json", result)


if __name__ == "__main__":
    main()
