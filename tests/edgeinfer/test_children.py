"""edgeinfer/children.py: a child dies with its parent, even one the parent spawned from a thread."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

PARENT = """
import sys, threading
from edgeinfer.children import spawn

def start(live_on):
    child = spawn([sys.executable, "-c", "import time; time.sleep(120)"], None)
    print(child.pid, flush=True)
    if live_on:
        # The parent-death signal follows the thread that forked: this one must outlive the spawn.
        threading.Event().wait()

if sys.argv[1] == "main":
    start(False)
else:
    threading.Thread(target=start, args=(True,), daemon=True).start()
sys.stdin.read()  # until the test kills this process
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_child_dies_with_its_parent(where: str) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, where], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5.0
        while _alive(child):
            assert time.monotonic() < deadline, f"child {child} outlived its parent"
            time.sleep(0.01)  # poll interval; the kernel sends the signal
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
