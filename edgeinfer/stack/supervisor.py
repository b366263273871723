"""One supervisor for the children of the local stack: it spawns each (dying with its parent), waits for
readiness with a real probe, restarts the children that may be restarted, and stops them in order.

Life cycle: start(child) for each → wait_ready(children) → watch() until stopped (a restartable child that
exits is started again, any other exit raises ChildExited) → stop_all(): by stop rank (Envoy 0, gateways 1,
Redis 2), SIGTERM to each process group, SIGKILL after the grace; whatever of this process's tree is left
(functions a gateway left behind) is stopped before the next rank, and anything at all at the end.

Children are spawned from the thread that made the supervisor (the main one): their parent-death signal
follows that thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO

from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.children import spawn
from edgeinfer.stack.procfs import descendants, is_running, reap_adopted, start_time, terminate_all

POLL_S = 0.05  # how often readiness is asked for; readiness itself is the probe's answer
RESTART_BACKOFF_S = 2.0  # at least this long between two restarts of one child


def tail(path: Path | None, lines: int = 5) -> str:
    """The last lines of a log, joined for a one-line message."""
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


class ChildExited(Exception):
    def __init__(self, child: Child, code: int | None) -> None:
        super().__init__(f"{child.name} exited with {code}")
        self.child = child
        self.code = code


class NotReady(Exception):
    def __init__(self, late: Sequence[Child], timeout: float) -> None:
        super().__init__(f"not ready after {timeout:.0f}s: {', '.join(c.name for c in late)}")
        self.late = list(late)
        self.timeout = timeout


class Stopped(Exception):
    """The supervisor's stop event was set (Ctrl-C, SIGTERM) while waiting."""


class Child:
    """A process of the stack: how to start it, how to know it is ready, how it stops."""

    def __init__(
        self,
        name: str,
        role: str,
        region: str,
        log_path: Path,
        probe: Callable[[], bool],
        *,
        argv: Callable[[], Sequence[str | Path]] | None = None,
        env: Mapping[str, str] | None = None,
        stop_rank: int = 0,
        stop_grace: float = 5.0,
        restart: bool = False,
    ) -> None:
        self.name = name
        self.role = role
        self.region = region
        self.log_path = log_path
        self.probe = probe
        self._argv = argv
        self._env = env
        self.stop_rank = stop_rank
        self.stop_grace = stop_grace
        self.restart = restart
        self.popen: subprocess.Popen[bytes] | None = None
        self.started: int | None = None  # start time in clock ticks: with the pid, names the process
        self.ready = False
        self.restarts = 0
        self.restarted_at = 0.0

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    def poll(self) -> int | None:
        """The exit status once it has exited; None while it runs (or before it was started)."""
        return self.popen.poll() if self.popen is not None else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def spawn(self) -> None:
        assert self._argv is not None, self.name
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log: IO[bytes]
        with self.log_path.open("ab") as log:
            self.popen = spawn(self._argv(), log, env=self._env)

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)  # its own session: the group is it and what it started

    def wait(self, timeout: float) -> bool:
        """True once it has exited (reaped) within `timeout` seconds."""
        if self.popen is None:
            return True
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True


class RedisChild(Child):
    """A region's Redis, run by cache/redis_server.py's RedisServer (the one tests use too)."""

    def __init__(self, name: str, region: str, server: RedisServer, *, stop_rank: int = 2) -> None:
        super().__init__(name, "redis", region, server.log_path, server.ping, stop_rank=stop_rank)
        self.server = server

    @property
    def pid(self) -> int | None:
        return self.server.pid

    def poll(self) -> int | None:
        return self.server.returncode

    @property
    def running(self) -> bool:
        return self.server.running

    def spawn(self) -> None:
        self.server.start()

    def signal(self, sig: int) -> None:
        pid = self.server.pid
        if pid is not None and self.server.running:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.server.running:
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)  # poll interval while it exits
        self.server.stop()  # closes the log; the process is already gone
        return True


class Supervisor:
    """`owns_process`: this process exists to run the stack (`edgeinfer up`, a drill), is a subreaper, and
    whatever is left of its whole tree is stopped and reaped; otherwise (a test, a library user) only the
    children's own trees are."""

    def __init__(
        self, stop: threading.Event | None = None, force: threading.Event | None = None, *, owns_process: bool = False
    ) -> None:
        self.children: list[Child] = []
        self.stop = stop or threading.Event()
        self.force = force or threading.Event()  # stop without waiting for drains
        self.owns_process = owns_process
        self._thread = threading.current_thread()

    def add(self, child: Child) -> Child:
        self.children.append(child)
        return child

    def owned_pids(self) -> list[int]:
        return [c.pid for c in self.children if c.pid is not None]

    def _reap(self) -> None:
        if self.owns_process:  # another owner's children are theirs to wait for
            reap_adopted(self.owned_pids())

    def _tree(self) -> dict[int, int]:
        """pid -> start time of what is to be stopped: this process's tree, or the children's."""
        if self.owns_process:
            return descendants(os.getpid())
        tree: dict[int, int] = {}
        for child in self.children:
            if child.pid is not None and child.started is not None and is_running(child.pid, child.started):
                tree[child.pid] = child.started
                tree.update(descendants(child.pid))
        return tree

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped

    # -- starting ----------------------------------------------------------------------------

    def start(self, child: Child) -> None:
        if threading.current_thread() is not self._thread:
            # PR_SET_PDEATHSIG follows the forking thread: a child spawned from a short-lived one would die early.
            raise RuntimeError(f"{child.name}: start children from the supervisor's thread ({self._thread.name})")
        if child not in self.children:
            self.add(child)
        child.ready = False
        child.spawn()
        child.started = start_time(child.pid) if child.pid is not None else None

    def restart(self, child: Child) -> None:
        """Start an exited child again (its ports are free once it is gone)."""
        if child.running:
            raise RuntimeError(f"{child.name}: still running")
        child.restarts += 1
        child.restarted_at = time.monotonic()
        self.start(child)

    def wait_ready(
        self,
        children: Iterable[Child],
        timeout: float,
        on_ready: Callable[[Child], None] | None = None,
        between: Callable[[], None] | None = None,
    ) -> None:
        """Until each child's probe answers: ChildExited if one exits, NotReady at the deadline, Stopped when
        asked to stop. `between` runs after each round (a progress display)."""
        waiting = list(children)
        deadline = time.monotonic() + timeout
        while True:
            self.check_stop()
            for child in list(waiting):
                code = child.poll()
                if code is not None:
                    raise ChildExited(child, code)
                if child.probe():
                    child.ready = True
                    waiting.remove(child)
                    if on_ready is not None:
                        on_ready(child)
            if between is not None:
                between()
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise NotReady(waiting, timeout)
            self.stop.wait(POLL_S)

    # -- running -----------------------------------------------------------------------------

    def watch(self, on_restart: Callable[[Child, int], None] | None = None, interval: float = 0.5) -> None:
        """Until stopped: restart a restartable child that exits (not twice within RESTART_BACKOFF_S), reap
        adopted orphans; ChildExited for any other child that exits."""
        while not self.stop.wait(interval):
            self.check_once(on_restart)

    def check_once(self, on_restart: Callable[[Child, int], None] | None = None) -> list[Child]:
        """One look at every child; returns those restarted."""
        restarted = []
        self._reap()
        for child in self.children:
            code = child.poll()
            if code is None:
                continue
            if not child.restart:
                raise ChildExited(child, code)
            if time.monotonic() - child.restarted_at < RESTART_BACKOFF_S:
                continue  # crashing at once again: give it a moment
            if on_restart is not None:
                on_restart(child, code)
            self.restart(child)
            restarted.append(child)
        return restarted

    # -- stopping ----------------------------------------------------------------------------

    def stop_all(self, on_left: Callable[[list[int]], None] | None = None) -> list[int]:
        """Stop every child by rank, then whatever of this process's tree is left (`on_left` hears of those
        a rank left behind). Returns the pids that could not be stopped (none, normally)."""
        tree = self._tree()  # before anything exits: afterwards orphans would lose their parent link
        ranks = sorted({c.stop_rank for c in self.children})
        for rank in ranks:
            group = [c for c in self.children if c.stop_rank == rank and c.running]
            for child in group:
                child.signal(signal.SIGTERM)
            grace = max((c.stop_grace for c in group), default=0.0)
            deadline = time.monotonic() + grace
            for child in group:
                while not child.wait(POLL_S):
                    if time.monotonic() >= deadline or self.force.is_set():
                        child.signal(signal.SIGKILL)
                        child.wait(5.0)
                        break
            # What the stopped ones left (a gateway's functions, in sessions of their own), before the next rank.
            later = [c for c in self.children if c.stop_rank > rank and c.running]
            keep = {c.pid for c in later if c.pid is not None}
            for child in later:
                if child.pid is not None:
                    keep |= descendants(child.pid).keys()
            left = {p: s for p, s in {**tree, **self._tree()}.items() if p not in keep and is_running(p, s)}
            if left:
                if on_left is not None:
                    on_left(sorted(left))
                grace = 1.0 if self.force.is_set() else 5.0
                terminate_all(left, grace=grace, owned=self.owned_pids(), reap=self.owns_process)
        for child in self.children:
            if isinstance(child, RedisChild):
                child.server.stop()  # closes its log
        self._reap()
        left = {p: s for p, s in tree.items() if is_running(p, s)}
        if self.owns_process:
            left.update(descendants(os.getpid()))
        return terminate_all(left, grace=2.0, owned=self.owned_pids(), reap=self.owns_process)
