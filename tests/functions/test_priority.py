"""Compute threads run at a lower CPU priority than the gRPC front (functions/priority.py)."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import pytest
from testkit.procs import start_function

from edgeinfer.functions.priority import MAX_NICE, lower_current_thread_priority

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are a Linux feature")


def _in_new_thread(steps: int) -> tuple[int | None, int]:
    result: list[tuple[int | None, int]] = []

    def body() -> None:
        applied = lower_current_thread_priority(steps)
        result.append((applied, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return result[0]


def test_lowers_only_the_calling_thread() -> None:
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    applied, seen = _in_new_thread(3)
    assert applied == seen == min(MAX_NICE, before + 3)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_caps_at_the_lowest_priority_and_zero_is_a_no_op() -> None:
    assert _in_new_thread(100)[1] == MAX_NICE
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert _in_new_thread(0) == (None, before)


def _nice_by_thread(pid: int) -> dict[int, int]:
    values = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = task.joinpath("stat").read_text().rsplit(")", 1)[1].split()
        values[int(task.name)] = int(fields[16])  # field 19 of stat(5), counted after "pid (comm)"
    return values


@pytest.mark.parametrize("compute_nice", [None, "0"])
def test_function_runs_models_below_the_front(model_repo: Path, tmp_path: Path, compute_nice: str | None) -> None:
    extra = () if compute_nice is None else ("--compute-nice", compute_nice)
    proc, _ = start_function(model_repo, tmp_path, *extra)
    try:
        base = os.getpriority(os.PRIO_PROCESS, 0)
        nice = _nice_by_thread(proc.popen.pid)
        assert nice[proc.popen.pid] == base, "the event loop (main thread) keeps the process's priority"
        lowered = [tid for tid, value in nice.items() if value > base]
        if compute_nice is None:
            # The executor's threads (they loaded and warmed up the models), at +10.
            assert lowered and all(nice[tid] == min(MAX_NICE, base + 10) for tid in lowered)
        else:
            assert lowered == []
    finally:
        proc.stop()
