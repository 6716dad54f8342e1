"""Whole `vecpress ingest` commands as a user runs them, and the memory of their process trees:
what pipeline.py and scale.py share.

A command runs in a fresh process (its own session, so that a kill reaches its Prefect API and Dask
workers too); its tree is sampled every SAMPLE_S for the RSS of each process, told apart by its
command line (the flow process, Dask workers and their children, the temporary Prefect API,
helpers). Its ``--json`` summary is read from its standard output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
from harness import Stopwatch

SAMPLE_S = 0.25


def start_ingest(folder: Path, collection: str, env: dict[str, str], storage_root: str,
                 milvus_uri: str, cwd: Path, stdout: IO[str] | int, stderr: IO[str] | int,
                 site: str | None = None) -> subprocess.Popen:
    """`vecpress ingest FOLDER --json` with ``env`` over this process's environment (``site``: an
    older vecpress's folder first on its path); no Prefect API of this shell's (it starts its own)."""
    cmd = [sys.executable, "-m", "vecpress", "ingest", str(folder), "--collection", collection,
           "--storage-root", storage_root, "--milvus-uri", milvus_uri, "--json"]
    full_env = os.environ | env | ({"PYTHONPATH": site} if site else {})
    full_env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(cmd, env=full_env, stdout=stdout, stderr=stderr, text=True,
                            start_new_session=True, cwd=cwd)


def summary_of(stdout: str) -> dict:
    """The run's summary: the JSON object that ends the command's standard output."""
    return json.loads(stdout[stdout.index("{\n"):])


def stage_rates(summary: dict) -> dict[str, float]:
    """Passages (or items) per busy second of each stage: per core, workers have one thread."""
    return {s["stage"]: round(s["items"] / s["seconds"], 1) if s["seconds"] else None
            for s in summary["stages"]}


def process_kind(proc: psutil.Process, workers: set[int]) -> str:
    """What a process under a `vecpress ingest` command is, from its command line."""
    cmd = " ".join(proc.cmdline())
    if "uvicorn" in cmd or "prefect" in " ".join(proc.cmdline()[:4]):
        return "prefect_api"
    if "milvus" in cmd.lower():
        return "milvus"
    if "resource_tracker" in cmd or "forkserver" in cmd:
        return "helper"
    if proc.ppid() in workers:
        return "worker_child"
    return "worker"


def _machine_busy_s() -> float:
    times = psutil.cpu_times()._asdict()  # guest time is counted in user time already
    return sum(times.get(f, 0.0) for f in ("user", "nice", "system", "irq", "softirq"))


class TreeMemory:
    """Peak RSS of a command's process tree, per process and kind (``flow``: the command itself;
    then ``process_kind``'s kinds; ``milvus_server``: a server started apart), and a timeline in
    MB of (seconds, flow, workers and their children, other children, the server)."""

    def __init__(self, server_pid: int | None = None) -> None:
        self.peaks: dict[int, tuple[str, int]] = {}
        self.cpu: dict[int, tuple[str, float]] = {}  # pid: (kind, CPU seconds when last seen)
        self.timeline: list[tuple[float, int, int, int, int]] = []
        self.server = psutil.Process(server_pid) if server_pid else None
        self.server_cpu_s = sum(self.server.cpu_times()[:2]) if self.server else 0.0
        self.machine_busy_s = _machine_busy_s()

    def _cpu(self, proc: psutil.Process, kind: str) -> None:
        times = proc.cpu_times()
        self.cpu[proc.pid] = (kind, times.user + times.system)

    def _peak(self, pid: int, kind: str, rss: int) -> None:
        self.peaks[pid] = (kind, max(rss, self.peaks.get(pid, ("", 0))[1]))

    def sample(self, parent: psutil.Process, at_s: float) -> None:
        try:
            flow = parent.memory_info().rss
            self._peak(parent.pid, "flow", flow)
            self._cpu(parent, "flow")
            workers = {p for p, (k, _) in self.peaks.items() if k == "worker"}
            total_workers = other = 0
            for child in parent.children(recursive=True):
                try:
                    kind = self.peaks[child.pid][0] if child.pid in self.peaks else \
                        process_kind(child, workers)
                    rss = child.memory_info().rss
                    self._cpu(child, kind)
                except psutil.Error:
                    continue
                self._peak(child.pid, kind, rss)
                if kind in ("worker", "worker_child"):
                    total_workers += rss
                else:
                    other += rss
            served = self.server.memory_info().rss if self.server else 0
            if self.server:
                self._peak(self.server.pid, "milvus_server", served)
                times = self.server.cpu_times()  # since this command started, not the server
                self.cpu[self.server.pid] = ("milvus_server",
                                             times.user + times.system - self.server_cpu_s)
            self.timeline.append((round(at_s, 1), flow >> 20, total_workers >> 20, other >> 20,
                                  served >> 20))
        except psutil.Error:
            pass

    def cpu_by_kind_s(self) -> dict[str, float]:
        """CPU seconds (user + system) of each kind's processes as last sampled, and ``outside``:
        the machine's busy seconds since this object was made that no sampled process accounts
        for (a Prefect API or Milvus Lite started apart, the kernel, other jobs)."""
        out: dict[str, float] = {}
        for kind, seconds in self.cpu.values():
            out[kind] = round(out.get(kind, 0.0) + seconds, 1)
        out["outside"] = round(_machine_busy_s() - self.machine_busy_s - sum(out.values()), 1)
        return out

    def by_kind_mb(self) -> dict[str, list[int]]:
        """Each kind's processes' peaks in MB."""
        out: dict[str, list[int]] = {}
        for kind, peak in self.peaks.values():
            out.setdefault(kind, []).append(peak >> 20)
        return out


def watch(proc: subprocess.Popen, memory: TreeMemory, clock: Stopwatch,
          kill_after_s: float | None = None) -> bool:
    """Sample ``proc``'s tree every SAMPLE_S until it exits; True if it was killed (SIGKILL to its
    whole process group, which it leads: ``start_new_session``) at ``kill_after_s`` on ``clock``."""
    parent = psutil.Process(proc.pid)
    while proc.poll() is None:
        if kill_after_s is not None and clock.seconds >= kill_after_s:
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
            proc.wait()
            return True
        memory.sample(parent, clock.seconds)
        time.sleep(SAMPLE_S)
    return False
