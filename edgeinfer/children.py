"""Child processes that die with their parent (Linux: prctl(PR_SET_PDEATHSIG)).

Every process the project starts for a long time (Redis, gateways and their workers, Envoy, the pool's functions)
is spawned through here, so a parent killed outright (SIGKILL, OOM) leaves nothing holding ports behind it.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process: spawn from the main
thread, or from a thread that lives as long as the child should.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1

# Resolved in the parent: the child, between fork and exec, must not dlopen (it may hold the loader's lock).
_prctl: Callable[..., int] | None
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None]:
    """A preexec_fn: the child gets `sig` when the thread that spawns it ends (SIGKILL by default: nothing is
    left to supervise a drain, and its ports must be free at once). No-op where prctl is missing."""
    parent = os.getpid()

    def preexec() -> None:
        if _prctl is None:
            return
        _prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died before prctl took effect: then no signal would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def spawn(
    argv: Sequence[str | Path],
    log: IO[bytes] | int | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    death_signal: int = signal.SIGKILL,
    new_session: bool = True,
    stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    stderr: IO[bytes] | int | None = subprocess.STDOUT,
) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (signalled as a group, never by the terminal's Ctrl-C), output to `log`
    (stderr with it, unless `stderr` says otherwise), dying with this thread of this process.

    `new_session=False` keeps it in this process's group: a signal to the group (a drill's SIGSTOP, a terminal's
    Ctrl-C) reaches it with its parent, as it reaches a gateway's workers with the gateway."""
    return subprocess.Popen(
        [str(a) for a in argv],
        stdin=stdin,
        stdout=log,
        stderr=stderr,
        start_new_session=new_session,
        preexec_fn=die_with_parent(death_signal),
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )
