"""Other load on the machine: the benchmark shares its cores with whatever else runs.

``busy_seconds`` reads /proc/stat (all CPUs); the CPU time of the contender (from its
rusage) and of nginx (from /proc/PID/stat) is subtracted from it to give the CPU used
by everything else during a run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU-seconds all CPUs spent not idle since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICK


def process_tree_cpu(root_pid: int) -> float:
    """CPU-seconds of ``root_pid`` and its direct children (nginx master + workers)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root_pid or ppid == root_pid:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def wait_for_quiet(
    server_pid: int, limit: float = 0.25, patience: float = 60.0
) -> float:
    """Wait (at most ``patience`` s) until other load is below ``limit`` cores.

    Returns the last measured other load in cores.
    """
    deadline = time.monotonic() + patience
    while True:
        busy0, srv0, t0 = busy_seconds(), process_tree_cpu(server_pid), time.monotonic()
        time.sleep(1.0)
        busy1, srv1 = busy_seconds(), process_tree_cpu(server_pid)
        load = max(0.0, (busy1 - busy0) - (srv1 - srv0)) / (time.monotonic() - t0)
        if load < limit or time.monotonic() > deadline:
            return load
