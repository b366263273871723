"""Process bookkeeping for the local stack (Linux /proc): process trees, identities, process groups.

A pid alone can be reused; a (pid, start time) pair names one process for good, so a state file can
say which processes a stack owns and a later run can tell whether they are still the same ones. Children die
with their parent through edgeinfer/children.py; this module finds and stops what is left.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last one.
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22), or None if it is gone."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and len(fields) > 19 else None


def is_running(pid: int, started: int | None = None) -> bool:
    """True while the process exists and is not a zombie (and, given `started`, is the same process)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return started is None or (len(fields) > 19 and int(fields[19]) == started)


def parents() -> dict[int, int]:
    """pid -> parent pid of every process visible in /proc."""
    table: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and len(fields) > 1:
                table[int(entry.name)] = int(fields[1])
    return table


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of `pid` (children, their children, ...) as pid -> start time."""
    children: dict[int, list[int]] = {}
    for child, parent in parents().items():
        children.setdefault(parent, []).append(child)
    found: dict[int, int] = {}
    stack = list(children.get(pid, []))
    while stack:
        current = stack.pop()
        started = start_time(current)
        if started is not None and is_running(current):
            found[current] = started
        stack.extend(children.get(current, []))
    return found


def set_child_subreaper() -> bool:
    """Adopt orphaned descendants (Linux): a grandchild whose parent dies is re-parented to this process,
    so it stays findable, and killable, under our tree. True if the kernel accepted it."""
    with contextlib.suppress(OSError, AttributeError):
        return int(ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    return False


def reap_adopted(owned: Iterable[int] = ()) -> None:
    """Collect exited children that are not ours by Popen (orphans adopted as a subreaper)."""
    skip = set(owned)
    me = os.getpid()
    for pid, parent in parents().items():
        if parent == me and pid not in skip:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)


def signal_process(pid: int, sig: int, started: int | None = None) -> None:
    """Send `sig` to one process, and to its group if it leads one; only if it is still the same process."""
    if not is_running(pid, started):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def terminate_all(processes: dict[int, int], grace: float, owned: Iterable[int] = (), reap: bool = True) -> list[int]:
    """SIGTERM each (pid, start time), wait up to `grace` seconds, SIGKILL the rest; return those still there.
    `reap`: collect exited children of this process meanwhile (not `owned`: their Popen waits for them)."""
    owned = set(owned)
    for pid, started in processes.items():
        signal_process(pid, signal.SIGTERM, started)
    deadline = time.monotonic() + grace
    while True:
        if reap:
            reap_adopted(owned)
        left = {p: s for p, s in processes.items() if is_running(p, s)}
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.05)  # poll interval while processes exit
    for pid, started in left.items():
        signal_process(pid, signal.SIGKILL, started)
    deadline = time.monotonic() + 5.0
    while left and time.monotonic() < deadline:
        if reap:
            reap_adopted(owned)
        left = {p: s for p, s in left.items() if is_running(p, s)}
        if left:
            time.sleep(0.05)
    return sorted(left)


def process_age(pid: int | None = None) -> float | None:
    """Seconds since the process started (10 ms resolution), or None if unknown."""
    started = start_time(os.getpid() if pid is None else pid)
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return None if started is None else max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))


def wide_console_width() -> int | None:
    """A width for rich when the output is not a terminal (a log, a pipe): wide enough that tables are not
    squeezed into 80 columns. None where the terminal, or $COLUMNS, decides."""
    if "COLUMNS" in os.environ or sys.stdout.isatty():
        return None
    return 200
