"""What a local Dask cluster costs beside the work: Dask's defaults against ``QUIET_CLUSTER``.

For each configuration a ``LocalCluster`` of 2 worker processes × 1 thread (as a run's own cluster
on 2 cores) is started, then measured twice:

- idle: CPU seconds of the scheduler's process and the workers over 20 s with nothing to do (the
  test suite's shared cluster idles most of a session; a run's cluster idles between stages);
- busy: the wall time of 16 pure-Python tasks of ~1.5 s each (the workers' profiler samples the
  thread that runs them every 10 ms by default).

    .venv/bin/python benchmarks/dask_idle.py [--idle-s 20]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

import dask
import psutil
from distributed import Client, LocalCluster
from harness import RESULTS, machine, write_results

from vecpress.infra.cluster import QUIET_CLUSTER


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i % 7
    return total


def measure(config: dict, idle_s: float) -> dict:
    with dask.config.set({"distributed.worker.daemon": False, **config}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                         dashboard_address=None, silence_logs=logging.WARNING) as cluster, \
            Client(cluster) as client:
        processes = [psutil.Process(os.getpid())] + [
            psutil.Process(pid) for pid in client.run(os.getpid).values()]
        time.sleep(3)  # past start-up
        before = [sum(p.cpu_times()[:2]) for p in processes]
        time.sleep(idle_s)
        idle = [(sum(p.cpu_times()[:2]) - b) / idle_s * 100 for p, b in
                zip(processes, before, strict=True)]
        n = 20_000_000
        client.gather(client.map(_spin, [n // 10] * 2, pure=False))  # warm
        started = time.perf_counter()
        client.gather(client.map(_spin, [n] * 16, pure=False))
        busy = time.perf_counter() - started
    return {"idle_percent_of_a_core": round(sum(idle), 1),
            "idle_by_process": [round(x, 1) for x in idle], "busy_16_tasks_s": round(busy, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle-s", type=float, default=20.0)
    args = parser.parse_args()
    runs = {"dask_defaults": measure({}, args.idle_s), "quiet": measure(QUIET_CLUSTER, args.idle_s)}
    print(f"{'':14} {'idle % of a core':>17} {'busy 16 tasks s':>16}")
    for name, run in runs.items():
        print(f"{name:14} {run['idle_percent_of_a_core']:17.1f} {run['busy_16_tasks_s']:16.2f}")
    result = {"machine": machine("distributed", git=True), "config": QUIET_CLUSTER,
              "idle_s": args.idle_s, **runs,
              "idle_ratio": round(runs["quiet"]["idle_percent_of_a_core"]
                                  / runs["dask_defaults"]["idle_percent_of_a_core"], 2),
              "busy_ratio": round(runs["quiet"]["busy_16_tasks_s"]
                                  / runs["dask_defaults"]["busy_16_tasks_s"], 3)}
    write_results(RESULTS / "dask_idle.json", result)


if __name__ == "__main__":
    main()
