"""`edgeinfer drill`: fault a region of the multi-region stack under open-loop load and check the promise that a
region can die and nothing is lost.

The drill starts the stack of `edgeinfer up` (edgeinfer/stack/local.py: Redis, a gateway with its local pool per
region, Envoy in front, all children of one supervisor),
keeps the drilled model warm in every region (`--standby-min-scale`, through the pools' admin API, the tuner's
lever), runs `edgeinfer bench` through Envoy with unique inputs (every request reaches a function), and
injects the fault into the region itself; faults at Envoy's edge would test the client, not the failover:

- kill: SIGKILL of the region's gateway; restored by starting it again;
- blackhole: SIGSTOP of the gateway: connections stay open, nothing answers; restored by SIGCONT;
- slow: every inference of the region is delayed (`--slow-ms`, the gateway's admin PUT /v1/fault);
- flap: kill and restart, again and again (`--flap-period`).

Envoy's view of the region's health is polled from its admin interface all along. The JSON report and PNG
timeline hold throughput, errors, p50/p99 per second and which region served; the verdict is printed against
the budgets it states.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from edgeinfer.gateway.admin_client import AdminClient
from edgeinfer.regions.drill_report import Action, Budgets, DrillResult, HealthChange, plot
from edgeinfer.regions.envoy_config import Timings
from edgeinfer.regions.topology import Topology, TopologyError, default_topology, load_topology
from edgeinfer.stack.envoy import host_health
from edgeinfer.stack.local import LocalStack, UpError
from edgeinfer.stack.procfs import set_child_subreaper, wide_console_width

SCENARIOS = ("kill", "blackhole", "slow", "flap")
DEFAULT_DURATION_S = 30.0
HEALTH_POLL_S = 0.05
STANDBY_WAIT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser, extra_scenarios: tuple[str, ...] = ()) -> None:
    """`extra_scenarios`: more choices of --scenario, run by the caller (the canary drills of edgeinfer.rollout)."""
    parser.add_argument("--scenario", choices=SCENARIOS + extra_scenarios, required=True)
    parser.add_argument("--region", default=None, help="the region to fault (default: the edge, which serves)")
    parser.add_argument("--rps", type=float, default=200.0, help="open-loop requests per second (default: 200)")
    parser.add_argument(
        "--duration",
        type=float,
        default=DEFAULT_DURATION_S,
        help="measured seconds (default: 30; a canary drill's: as long as its steps need)",
    )
    parser.add_argument("--report", type=Path, required=True, help="JSON report; the PNG goes beside it")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--topology", type=Path, help="topology file (default: the default topology of `up`)")
    parser.add_argument("--model-repo", type=Path, help="model repository (default: the topology's, ./models)")
    parser.add_argument("--fault-at", type=float, help="seconds into the measured run (default: 30%%)")
    parser.add_argument("--restore-at", type=float, help="seconds into the measured run (default: 60%%)")
    parser.add_argument("--slow-ms", type=float, default=300.0, help="slow: added latency (default: 300)")
    parser.add_argument("--flap-period", type=float, default=4.0, help="flap: seconds per kill+restart cycle")
    parser.add_argument(
        "--standby-min-scale",
        type=int,
        default=1,
        help="min-scale of the model in every region during the drill: failover lands on warm instances",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before measuring")
    parser.add_argument("--timeout-ms", type=float, default=5000.0, help="each request's deadline")
    parser.add_argument("--state-dir", type=Path, help="logs of the drill's stack (default: a temporary folder)")


class EnvoyWatch:
    """Polls Envoy's admin /clusters and records each change of every region's health in the `edge` cluster."""

    def __init__(self, admin_port: int, hosts: dict[str, str], clock: Callable[[], float]) -> None:
        self._admin_port = admin_port
        self._regions = {address: region for region, address in hosts.items()}
        self._clock = clock
        self.changes: list[HealthChange] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="envoy-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        last: dict[str, str] = {}
        while not self._stop.wait(HEALTH_POLL_S):
            try:
                health = host_health(self._admin_port).get("edge", {})
            except (OSError, ValueError):
                continue
            for address, state in health.items():
                region = self._regions.get(address)
                if region is not None and last.get(region) != state:
                    last[region] = state
                    self.changes.append(HealthChange(round(self._clock(), 3), region, state))


def _admin(address: str | None) -> AdminClient:
    assert address is not None, "the drill's regions have admin ports (the default topology gives them)"
    return AdminClient(address)


def _single_model_repo(source: Path, model: str, into: Path) -> Path:
    """A repository view holding only the drilled model, so the regions do not spend the cores on others."""
    if not (source / model).is_dir():
        raise SystemExit(f"edgeinfer drill: no model '{model}' in {source}")
    view = into / "models"
    view.mkdir(parents=True, exist_ok=True)
    link = view / model
    if not link.exists():
        link.symlink_to((source / model).resolve(), target_is_directory=True)
    return view


def drilled_region(args: argparse.Namespace, console: Console) -> tuple[Topology, str] | None:
    """The topology (--topology, else `up`'s default) and the region to drill (--region, else the edge); None,
    the reason printed, when either is wrong."""
    try:
        topology: Topology = load_topology(args.topology) if args.topology else default_topology()
    except TopologyError as exc:
        console.print(f"edgeinfer drill: {exc}".replace("\n", "; "))
        return None
    region = args.region or topology.regions[0].name
    if region not in topology.names:
        console.print(f"edgeinfer drill: --region {region}: unknown (known: {', '.join(topology.names)})")
        return None
    return topology, region


def start_stack(stack: LocalStack, console: Console) -> bool:
    """Preflight, the models, then every child ready, with progress; False (the reason printed) if it cannot."""
    try:
        stack.preflight()
        stack.prepare_models()
        with Progress(
            SpinnerColumn(finished_text="[green]✓[/]"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
        ) as progress:
            stack.start(progress)
    except UpError as exc:
        console.print(f"edgeinfer drill: {exc}")
        return False
    return True


def run(args: argparse.Namespace) -> int:
    from edgeinfer.functions.examples import write_examples
    from edgeinfer.functions.repository import RepositoryError, scan
    from edgeinfer.loadgen import BenchOptions
    from edgeinfer.loadgen.runner import BackgroundBench

    console = Console(highlight=False, width=wide_console_width())
    chosen = drilled_region(args, console)
    if chosen is None:
        return 2
    topology, region = chosen
    if args.duration <= 0 or args.rps <= 0:
        console.print("edgeinfer drill: --duration and --rps must be positive")
        return 2
    fault_at = args.fault_at if args.fault_at is not None else round(args.duration * 0.3, 3)
    restore_at = args.restore_at if args.restore_at is not None else round(args.duration * 0.6, 3)
    if not 0 <= fault_at < restore_at <= args.duration:
        console.print("edgeinfer drill: need 0 <= --fault-at < --restore-at <= --duration")
        return 2
    budgets = Budgets(max_latency_ms=250.0 if args.scenario in ("blackhole", "slow") else None)

    state_dir = (args.state_dir or Path(tempfile.mkdtemp(prefix="edgeinfer-drill-"))).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    source_repo = (args.model_repo or topology.model_repo).resolve()
    try:
        scan(source_repo)
    except RepositoryError:
        source_repo.mkdir(parents=True, exist_ok=True)
        write_examples(source_repo)
    repo = _single_model_repo(source_repo, args.model, state_dir)

    stack = LocalStack(topology, args.topology, topology.entry, repo, state_dir, 120.0, console, edge=None)
    stack.install_signal_handlers()
    set_child_subreaper()
    target = next(r for r in stack.regions if r.endpoints.name == region)
    actions: list[Action] = []
    notes: list[str] = []
    # Monotonic time of the measured start: an estimate until the bench fixes it.
    measured_start = [time.monotonic() + 60.0]

    def now() -> float:
        return time.monotonic() - measured_start[0]

    def act(what: str, do: Callable[[], None]) -> None:
        do()
        actions.append(Action(round(now(), 3), what))
        console.print(f"  t={now():6.2f}s {what} {region}")

    def gateway_pid() -> int:
        assert target.gateway is not None and target.gateway.pid is not None
        return target.gateway.pid

    def kill() -> None:
        os.kill(gateway_pid(), signal.SIGKILL)
        assert target.gateway is not None
        target.gateway.wait(30.0)

    def restart() -> None:
        stack.restart_gateway(target)

    admin = _admin(target.endpoints.admin)

    def slow() -> None:
        admin.set_fault(args.slow_ms)

    def fast() -> None:
        admin.clear_fault()

    faults: dict[str, tuple[tuple[str, Callable[[], None]], tuple[str, Callable[[], None]]]] = {
        "kill": (("kill", kill), ("restart", restart)),
        "blackhole": (
            ("stop", lambda: os.kill(gateway_pid(), signal.SIGSTOP)),
            ("continue", lambda: os.kill(gateway_pid(), signal.SIGCONT)),
        ),
        "slow": (("slow", slow), ("fast", fast)),
    }

    def wait_until(t: float) -> bool:
        while now() < t:
            if stack.stop.wait(min(0.01, max(0.0, t - now()))):
                return False
        return True

    def injector() -> None:
        try:
            if not wait_until(fault_at):
                return
            if args.scenario == "flap":
                half = args.flap_period / 2
                t = fault_at
                while t + half <= restore_at:
                    if not wait_until(t):
                        return
                    act("kill", kill)
                    if not wait_until(t + half):
                        return
                    act("restart", restart)
                    t += args.flap_period
                return
            (fault_name, fault), (restore_name, restore) = faults[args.scenario]
            act(fault_name, fault)
            if wait_until(restore_at):
                act(restore_name, restore)
        except Exception as exc:  # the report says what went wrong; the load goes on
            notes.append(f"fault injection failed: {type(exc).__name__}: {exc}")

    command = "edgeinfer drill " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    code = 0
    try:
        if not start_stack(stack, console):
            return 1
        with console.status(f"warm standby: min-scale {args.standby_min_scale} for {args.model} in every region"):
            for other in stack.regions:
                _admin(other.endpoints.admin).update_pool(args.model, {"min-scale": args.standby_min_scale})
            deadline = time.monotonic() + STANDBY_WAIT_S
            while time.monotonic() < deadline:
                if all(_admin(o.endpoints.admin).warm(args.model) >= args.standby_min_scale for o in stack.regions):
                    break
                time.sleep(0.1)  # poll interval; the pools' own readiness decides
        hosts = {r.endpoints.name: r.endpoints.grpc for r in stack.regions}
        measured_start[0] = time.monotonic() + args.warmup + 1.0  # until the bench says; ~ its start lead
        watch = EnvoyWatch(topology.envoy_admin, hosts, now)
        watch.start()
        console.print(
            f"drill {args.scenario} of {region}: {args.rps:g} req/s for {args.duration:g}s through {stack.entry}; "
            f"fault at {fault_at:g}s, restore at {restore_at:g}s"
        )
        options = BenchOptions(
            target=stack.entry,
            model=args.model,
            rate=args.rps,
            duration=args.duration,
            warmup=args.warmup,
            unique=True,
            record_events=True,
            timeout_ms=args.timeout_ms,
            processes=1,
        )
        # The load runs in a thread; faults are injected from this one, which outlives the processes it starts.
        bench = BackgroundBench(options, progress=True)
        start_wall = bench.start()
        if start_wall is not None:
            measured_start[0] = time.monotonic() + (start_wall - time.time()) + args.warmup
            injector()
        try:
            report_data = bench.result()
        except Exception as exc:
            console.print(f"edgeinfer drill: the load did not run: {exc}")
            return 1
        finally:
            watch.stop()
        events = [(e[0] - args.warmup, e[1], e[2], e[3]) for e in report_data.events]
        result = DrillResult(
            scenario=args.scenario,
            region=region,
            rps=args.rps,
            duration_s=args.duration,
            command=command,
            budgets=budgets,
            actions=actions,
            health=watch.changes,
            events=events,
            notes=[
                *notes,
                f"warm standby: min-scale {args.standby_min_scale} for {args.model} in every region",
                f"Envoy per-try timeout {Timings().per_try_timeout_s * 1000:g} ms with hedging",
            ],
        )
        data = result.to_dict()
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(data, indent=1) + "\n")
        png = args.report.with_suffix(".png")
        plot(data, png)
        _print_verdict(console, data, args.report, png)
        code = 0 if data["result"]["passed"] else 1
    finally:
        stack.shutdown()  # it continues a stopped gateway first: one that is stopped cannot drain
    return code


def _print_verdict(console: Console, data: dict[str, object], report: Path, png: Path) -> None:
    result = data["result"]
    assert isinstance(result, dict)
    table = Table(title=f"drill {data['scenario']} of {data['region']}", title_justify="left")
    table.add_column("check")
    table.add_column("measured", justify="right")
    table.add_column("budget", justify="right")
    table.add_column("")
    for name, check in result["checks"].items():
        value = check["value"]
        shown = "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
        table.add_row(name, shown, check["budget"], "[green]pass[/]" if check["pass"] else "[red]FAIL[/]")
    console.print(table)
    console.print(
        f"sent {result['sent']}, ok {result['ok']}, failed {result['failed']} {result['failed_by_status']}; "
        f"served by {result['served_by_region']}; detection {result['detection']}",
        soft_wrap=True,
    )
    verdict = "[bold green]PASS[/]" if result["passed"] else "[bold red]FAIL[/]"
    console.print(f"{verdict}: report {report}, plot {png}")
