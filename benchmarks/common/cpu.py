"""CPU accounting on a shared box: how much CPU did *other* work take while a step ran?

Total busy time comes from /proc/stat; the server's from its processes' /proc/PID/stat
(threads included); the load generator's from this process's reaped children
(`RUSAGE_CHILDREN`, which covers `edgeinfer bench` and its worker processes once waited
for). Whatever is left was someone else's: a step measured while other work ran is noise.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle, summed over all CPUs, since boot."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def processes_cpu_seconds(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICK


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    at: float
    machine: float
    server: float
    children: float


class ForeignCpu:
    """Measure CPU use by processes other than the server (`server_pids()`) and our children."""

    def __init__(self, server_pids: Callable[[], Sequence[int]]) -> None:
        self._server_pids = server_pids

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(
            at=time.monotonic(),
            machine=machine_busy_seconds(),
            server=processes_cpu_seconds(self._server_pids()),
            children=children_cpu_seconds(),
        )

    def cores_since(self, before: CpuSnapshot) -> float:
        """Average CPUs' worth of other work since `before` (never below 0)."""
        after = self.snapshot()
        wall = max(after.at - before.at, 1e-3)
        ours = (after.server - before.server) + (after.children - before.children)
        return max(0.0, (after.machine - before.machine - ours) / wall)

    def wait_quiet(self, max_cores: float, window: float = 1.0, max_wait: float = 60.0) -> float:
        """Wait until the whole box (the idle server included) uses under `max_cores` for `window` s.

        Gives up after `max_wait` s; returns the last measured busy cores.
        """
        deadline = time.monotonic() + max_wait
        while True:
            start_busy, start = machine_busy_seconds(), time.monotonic()
            time.sleep(window)
            busy = (machine_busy_seconds() - start_busy) / (time.monotonic() - start)
            if busy <= max_cores or time.monotonic() >= deadline:
                return busy
