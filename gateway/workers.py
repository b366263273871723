"""`edgeinfer gateway --workers N`: N gateway processes serving one gRPC port (and one REST port).

Each worker is a whole gateway (gateway/server.py) with its own data plane, L1 and backend, all sharing the
region's Redis; the kernel spreads new connections over them (SO_REUSEPORT; a gRPC channel stays with the worker
it reached). The parent, this module, does no inference:

- it holds the ports from before the first worker starts until the last one stops: bound, never listening, with
  SO_REUSEPORT, so the workers can bind them and nothing else can (and `--port 0` resolves here, once);
- it starts each worker (`edgeinfer gateway --worker I`, its settings as JSON on stdin: secrets never reach
  argv) in its own process group, dying with the parent (edgeinfer/children.py); a signal to the group (a
  drill's SIGSTOP, a terminal's Ctrl-C) reaches every worker with it;
- it restarts a worker that exits, after a backoff, up to RESTART_LIMIT times within RESTART_WINDOW_S; past that,
  or if a worker exits before it first served, it stops the group and exits non-zero, so whatever runs the
  gateway (a pod, `edgeinfer up`'s supervisor) sees it;
- it serves `--admin-port` for the whole group (gateway/workers_admin.py); each worker's own admin port is a
  private loopback one the parent holds;
- on SIGTERM or SIGINT it reports not ready, passes SIGTERM to every worker (each drains as a lone gateway
  does), and SIGKILLs those still running after WORKER_STOP_GRACE_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import aiohttp

from edgeinfer.children import spawn
from edgeinfer.exposure import is_loopback
from edgeinfer.gateway.auth import admin_middleware
from edgeinfer.gateway.settings import GatewaySettings
from edgeinfer.gateway.workers_admin import GroupAdminFront, WorkerView
from edgeinfer.tls import ServerTLS

log = logging.getLogger("edgeinfer.gateway.workers")

POLL_S = 0.1  # how often the parent looks at its workers
RESTART_LIMIT = 5  # restarts within the window before the group gives up
RESTART_WINDOW_S = 60.0
BACKOFF_FIRST_S = 0.5  # before a restart; doubled for each exit within the window, up to BACKOFF_MAX_S
BACKOFF_MAX_S = 8.0
# Under `edgeinfer up` the supervisor gives the whole gateway 25 s; each worker drains within ~11 s.
WORKER_STOP_GRACE_S = 20.0


# -- how many ----------------------------------------------------------------------------------


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by its cgroup's CPU quota (a container's CPU limit,
    rounded up: a limit of 1.5 CPUs gets 2 workers)."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    count = affinity if quota is None else min(affinity, math.ceil(quota))
    return max(1, count)


def cgroup_cpu_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """The tightest CPU quota (in CPUs) from this process's cgroup up to the root: cgroup v2 `cpu.max`, or v1
    `cpu.cfs_quota_us` / `cpu.cfs_period_us`; None when there is none (or it cannot be read)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            mounts = [cgroup_root]  # v2: one unified hierarchy
        elif "cpu" in controllers.split(","):
            mounts = [cgroup_root / "cpu,cpuacct", cgroup_root / "cpu", cgroup_root / controllers]
        else:
            continue
        mount = next((m for m in mounts if m.is_dir()), None)
        if mount is None:
            continue
        directory = mount / path.lstrip("/")
        while True:
            quota = _quota_in(directory)
            if quota is not None:
                quotas.append(quota)
            if directory == mount or mount not in directory.parents:
                break
            directory = directory.parent
    return min(quotas) if quotas else None


def _quota_in(directory: Path) -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        v2 = directory / "cpu.max"
        if v2.exists():
            limit, period = v2.read_text().split()[:2]
            return None if limit == "max" else int(limit) / int(period)
        v1 = directory / "cpu.cfs_quota_us"
        if v1.exists():
            limit_us = int(v1.read_text())
            period_us = int((directory / "cpu.cfs_period_us").read_text())
            return None if limit_us <= 0 else limit_us / period_us
    return None


# -- ports -------------------------------------------------------------------------------------


class PortReservation:
    """host:port held for a group: bound with SO_REUSEPORT and never listening, so the kernel gives it no
    connection, the group's workers can bind it, and no other server can. SystemExit naming the port when
    something else holds it. `port` is the one bound (port 0 resolves here)."""

    def __init__(self, host: str, port: int, what: str) -> None:
        self.host = host
        self._sockets: list[socket.socket] = []
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise SystemExit(f"cannot listen on {host}:{port} for the {what}: {exc.strerror}") from None
        seen: set[tuple[int, str]] = set()
        for family, kind, proto, _, address in infos:
            key = (int(family), str(address[0]))
            if key in seen:
                continue
            seen.add(key)
            bound = (address[0], port, *address[2:])
            try:
                # A lone server's bind first: a reuse-port group of anyone else's would otherwise share the port
                # silently. Then ours, with SO_REUSEPORT, on the port that bind gave.
                with socket.socket(family, kind, proto) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(bound)
                    port = probe.getsockname()[1]
                held = socket.socket(family, kind, proto)
                held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                held.bind((address[0], port, *address[2:]))
            except OSError as exc:
                self.close()
                raise SystemExit(
                    f"cannot listen on {host}:{port} for the {what}: {exc.strerror}; is the port in use?"
                ) from None
            self._sockets.append(held)
        self.port = port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        for held in self._sockets:
            held.close()
        self._sockets.clear()


# -- workers -----------------------------------------------------------------------------------


class WorkerExited(Exception):
    """The group cannot go on: a worker failed before it ever served, or too often."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class Worker:
    """One worker process: how to start it, whether it serves yet, its exits."""

    def __init__(self, index: int, settings_json: bytes, admin: PortReservation) -> None:
        self.index = index
        self.admin = admin
        self._settings_json = settings_json
        self.popen: subprocess.Popen[bytes] | None = None
        self.served = False  # its admin has answered since this process started
        self.ever_served = False
        self.restarts = 0
        self.exits: deque[float] = deque()
        self.restart_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None and self.popen.returncode is None else None

    def start(self) -> None:
        argv = [sys.executable, "-m", "edgeinfer.cli", "gateway", "--worker", str(self.index)]
        read, write = os.pipe()
        try:
            # Its output is the parent's: one log for the group, each line tagged with the worker.
            self.popen = spawn(argv, None, stdin=read, stderr=None, new_session=False)
        finally:
            os.close(read)
        try:
            with os.fdopen(write, "wb") as pipe:
                pipe.write(self._settings_json)
        except BrokenPipeError:
            pass  # it exited at once: poll() tells
        self.served = False
        self.restart_at = None

    def poll(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def view(self) -> WorkerView:
        return WorkerView(self.index, self.pid, self.admin.address, self.restarts)


def worker_settings(settings: GatewaySettings, index: int, ports: dict[str, int], admin_port: int) -> bytes:
    """The settings of worker `index` as JSON: the group's, on the group's ports, its admin on a private one."""
    values = settings.model_dump(mode="json")
    values.update(
        workers=1,
        worker_index=index,
        reuse_port=True,
        port=ports["grpc"],
        rest_port=ports.get("rest"),
        admin_port=admin_port,
        admin_host="127.0.0.1",
    )
    if settings.admin_token is not None:
        values["admin_token"] = settings.admin_token.get_secret_value()  # dumped as asterisks
    if settings.state_dir is not None:
        values["state_dir"] = str(settings.state_dir / f"worker-{index}")  # each its own pool's logs
    return json.dumps(values).encode()


class WorkerGroup:
    """The parent of `settings.workers` workers; `run()` until SIGTERM or SIGINT, returns the exit status."""

    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.workers: list[Worker] = []
        self._reservations: list[PortReservation] = []
        self._stop = asyncio.Event()
        self._force = False
        self._admin: GroupAdminFront | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ports: dict[str, int] = {}

    def views(self) -> list[WorkerView]:
        return [w.view() for w in self.workers]

    def _reserve(self, host: str, port: int, what: str) -> PortReservation:
        reservation = PortReservation(host, port, what)
        self._reservations.append(reservation)
        return reservation

    def _on_signal(self) -> None:
        if self._stop.is_set():
            self._force = True  # a second signal: do not wait for the drains
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal)
        try:
            await self._start()
            await self._supervise()
            return 0
        except WorkerExited as exc:
            print(f"edgeinfer gateway: {exc}; stopping the gateway", file=sys.stderr, flush=True)
            return exc.code
        finally:
            await self._stop_all()

    async def _start(self) -> None:
        settings = self.settings
        self._ports = ports = {"grpc": self._reserve(settings.host, settings.port, "gRPC port").port}
        if settings.rest_port is not None:
            ports["rest"] = self._reserve(settings.host, settings.rest_port, "REST front").port
        for index in range(settings.workers):
            admin = self._reserve("127.0.0.1", 0, f"admin port of worker {index}")
            self.workers.append(Worker(index, worker_settings(settings, index, ports, admin.port), admin))
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        if settings.admin_port is not None:
            self._admin = self._admin_front()
            await self._admin.start()
        for worker in self.workers:
            worker.start()

    def _started(self) -> None:
        settings = self.settings
        ports = self._ports
        if self._admin is not None:
            self._admin.started = True
        print(
            f"edgeinfer gateway region={settings.region} grpc={settings.host}:{ports['grpc']}"
            + (f" rest={settings.host}:{ports['rest']}" if "rest" in ports else "")
            + (f" admin={settings.admin_host}:{self._admin.port}" if self._admin is not None else "")
            + f" workers={settings.workers} pids={','.join(str(w.pid) for w in self.workers)}",
            flush=True,
        )

    def _admin_front(self) -> GroupAdminFront:
        settings = self.settings
        token = settings.admin_token.get_secret_value() if settings.admin_token is not None else None
        tls = None
        if settings.tls_cert is not None and settings.tls_key is not None and not is_loopback(settings.admin_host):
            tls = ServerTLS.load(settings.tls_cert, settings.tls_key, settings.tls_client_ca).ssl_context(mutual=False)
        return GroupAdminFront(
            self.views,
            settings.region,
            token=token,
            middlewares=[admin_middleware(token)] if token is not None else (),
            host=settings.admin_host,
            port=settings.admin_port or 0,
            tls=tls,
        )

    async def _serves(self, worker: Worker) -> bool:
        """True once this process of the worker answers its admin port (it opens it after its gRPC front)."""
        assert self._session is not None
        pid = worker.pid
        if pid is None:
            return False
        try:
            async with self._session.get(f"http://{worker.admin.address}/healthz") as reply:
                body = await reply.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return False
        return isinstance(body, dict) and body.get("pid") == pid

    async def _supervise(self) -> None:
        """Until stopped: restart a worker that exits; the first time every worker serves, say so."""
        started = False
        while not self._stop.is_set():
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None:
                    if now >= worker.restart_at:
                        worker.restarts += 1
                        worker.start()
                        log.info("worker %d started again (pid %s, restart %d)", worker.index, worker.pid,
                                 worker.restarts)  # fmt: skip
                    continue
                code = worker.poll()
                if code is None:
                    if not worker.served and await self._serves(worker):
                        worker.served = worker.ever_served = True
                    continue
                if self._stop.is_set():
                    return  # the signal reached it first (sent to the group)
                if not worker.ever_served:  # a flag, a file, a port: restarting would only fail again
                    raise WorkerExited(f"worker {worker.index} exited with {code} while starting", code or 1)
                self._exited(worker, code, now)
            if not started and all(w.served for w in self.workers):
                started = True
                self._started()
            await self._wait(POLL_S)

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    def _exited(self, worker: Worker, code: int, now: float) -> None:
        worker.exits.append(now)
        while worker.exits and now - worker.exits[0] > RESTART_WINDOW_S:
            worker.exits.popleft()
        if len(worker.exits) > RESTART_LIMIT:
            raise WorkerExited(
                f"worker {worker.index} exited {len(worker.exits)} times within {RESTART_WINDOW_S:.0f}s "
                f"(last with {code})",
                1,
            )
        backoff = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** (len(worker.exits) - 1))
        worker.restart_at = now + backoff
        log.warning("worker %d (pid %s) exited with %s; starting it again in %.1fs",
                    worker.index, worker.popen.pid if worker.popen else None, code, backoff)  # fmt: skip

    async def _stop_all(self) -> None:
        if self._admin is not None:
            self._admin.draining = True
        running = [w for w in self.workers if w.poll() is None]
        for worker in running:
            assert worker.popen is not None
            with contextlib.suppress(ProcessLookupError):
                worker.popen.send_signal(signal.SIGCONT)  # a stopped one cannot drain
                worker.popen.send_signal(signal.SIGTERM)  # again, if it came to the group: harmless
        deadline = time.monotonic() + WORKER_STOP_GRACE_S
        while any(w.poll() is None for w in running) and time.monotonic() < deadline and not self._force:
            await asyncio.sleep(POLL_S)  # poll interval while the workers drain
        for worker in running:
            if worker.poll() is None:
                assert worker.popen is not None
                log.warning("worker %d (pid %d) did not stop in time: SIGKILL", worker.index, worker.popen.pid)
                worker.popen.kill()
                worker.popen.wait()
        if self._admin is not None:
            await self._admin.stop()
        if self._session is not None:
            await self._session.close()
        for reservation in self._reservations:
            reservation.close()


def run_group(settings: GatewaySettings) -> int:
    """`edgeinfer gateway --workers N` (N > 1): the parent, until SIGTERM or SIGINT."""
    group = WorkerGroup(settings)
    try:
        return asyncio.run(group.run())
    except SystemExit as exc:  # a port in use, named
        if isinstance(exc.code, str):
            print(f"edgeinfer gateway: {exc.code}", file=sys.stderr)
            return 2
        raise
