"""CPU priority of compute threads: the gRPC front before the model's arithmetic.

When ONNX Runtime keeps every core busy, the event loop that reads requests and answers them (a rejection,
a health check, a finished batch's reply) waits behind it for the CPU. Lowering the compute threads' priority
lets the kernel run the front first; compute still takes every cycle the front leaves. Threads ONNX Runtime
starts for a session inherit the priority of the thread that creates the session.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

MAX_NICE = 19
DEFAULT_COMPUTE_NICE = 10  # CFS weight 110 against 1024 at nice 0: the front gets ~90 % of a contested core


def lower_current_thread_priority(steps: int) -> int | None:
    """Raise this thread's nice value by `steps` (capped at 19); return the new value, or None if not possible.

    Linux only: there `setpriority(PRIO_PROCESS, tid)` applies to one thread. Raising nice needs no privilege.
    """
    if steps <= 0 or sys.platform != "linux":
        return None
    tid = threading.get_native_id()
    try:
        target = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, tid) + steps)
        os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError as exc:  # e.g. a seccomp profile that forbids it: serve anyway, at the same priority
        log.warning("could not lower the compute thread's CPU priority (%s); continuing without", exc)
        return None
    return target
