"""`edgeinfer status`: each region of the stack at a glance: does it answer, warm instances per model, cold
starts, cache hit ratio and p99 latency (estimated from the gateway's histogram buckets, since it started).

Which stack: `--state-dir DIR` reads the state file `edgeinfer up` writes there (DIR/up.json); `--topology
FILE` asks the regions of a topology where `edgeinfer up` would run them, and the entry (Envoy) on `--port` or
the topology's `entry`; with neither, ./.edgeinfer/up.json if present, else the default topology.
A region that does not answer is shown as down. Exit status: 0 when every region answers ready, 3 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeinfer.gateway.admin_client import AdminClient, AdminError
from edgeinfer.probes import server_ready
from edgeinfer.regions.topology import TopologyError, default_topology, load_topology
from edgeinfer.stack.observe import ModelFigures, model_figures
from edgeinfer.stack.procfs import is_running, wide_console_width
from edgeinfer.stack.state import DEFAULT_STATE_DIR, RegionEndpoints, entry_address, local_layout, read_state

EXIT_SOME_DOWN = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--topology", type=Path, help="ask the regions of this topology file")
    which.add_argument(
        "--state-dir",
        type=Path,
        help=f"ask the stack `edgeinfer up --state-dir DIR` runs (default: ./{DEFAULT_STATE_DIR})",
    )
    parser.add_argument("--port", type=int, help="the entry port `edgeinfer up` was given (default: the topology's)")
    parser.add_argument("--timeout", type=float, default=2.0, help="seconds to wait for each region's answers")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


@dataclass
class RegionStatus:
    endpoints: RegionEndpoints
    answers: bool = False
    ready: bool = False
    error: str | None = None
    admin_error: str | None = None
    models: dict[str, ModelFigures] = field(default_factory=dict)

    @property
    def state(self) -> str:
        if not self.answers:
            return "down"
        return "up" if self.ready else "not ready"

    def as_dict(self) -> dict[str, Any]:
        e = self.endpoints
        return {
            "region": e.name,
            "grpc": e.grpc,
            "admin": e.admin,
            "state": self.state,
            "answers": self.answers,
            "ready": self.ready,
            "error": self.error,
            "admin_error": self.admin_error,
            "models": {name: figures.as_dict() for name, figures in self.models.items()},
        }


def probe(endpoints: RegionEndpoints, timeout: float) -> RegionStatus:
    """One region's answers; never raises for a region that is down."""
    status = RegionStatus(endpoints)
    ready, error = server_ready(endpoints.grpc, timeout)
    status.answers = ready is not None
    status.ready = bool(ready)
    status.error = error
    if endpoints.admin is None:
        status.admin_error = "no admin endpoint in the topology"
        return status
    admin = AdminClient(endpoints.admin, timeout=timeout)
    try:
        pools = admin.pools()
        metrics = admin.metrics()
    except AdminError as exc:  # refused, timed out, HTTP error, bad JSON
        status.admin_error = f"admin {endpoints.admin}: {exc.reason}"
        return status
    try:
        status.models = model_figures(metrics, pools)
    except (ValueError, KeyError, TypeError) as exc:
        status.admin_error = f"admin {endpoints.admin}: unreadable metrics: {exc}"
    return status


def _find_stack(args: argparse.Namespace) -> tuple[list[RegionEndpoints], str, str, str | None]:
    """The regions to ask, the entry, where they came from and a warning; ValueError if there is nothing."""
    if args.topology is not None:
        topology = load_topology(args.topology)
        return local_layout(topology), entry_address(topology, args.port), f"topology {args.topology}", None
    state_dir = args.state_dir if args.state_dir is not None else DEFAULT_STATE_DIR
    state = read_state(state_dir)
    if state is None:
        if args.state_dir is not None:
            raise ValueError(f"no {state_dir}/up.json: is `edgeinfer up --state-dir {state_dir}` running?")
        topology = default_topology()
        source = "the default topology (no ./.edgeinfer/up.json)"
        return local_layout(topology), entry_address(topology, args.port), source, None
    warning = None
    if not is_running(state.pid, state.start_time):
        warning = f"edgeinfer up (pid {state.pid}) is not running"
    elif not state.ready:
        warning = "edgeinfer up is still starting"
    return state.regions, state.entry, f"{state_dir}/up.json", warning


def _short(error: str | None) -> str:
    """A gRPC failure in a few words (--json has it whole)."""
    code = (error or "no answer").split(":", 1)[0]
    return {"UNAVAILABLE": "not answering (UNAVAILABLE)", "DEADLINE_EXCEEDED": "no answer in time"}.get(code, code)


def _duration(seconds: float) -> str:
    ms = seconds * 1000
    if ms >= 1000:
        return f"{seconds:.2f} s"
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def render(statuses: list[RegionStatus], source: str, warning: str | None, console: Console) -> None:
    title = f"edgeinfer status: {len(statuses)} regions, from {source}"
    if warning:
        title += f" [yellow]({warning})[/]"
    table = Table(title=title, title_justify="left")
    table.add_column("region", no_wrap=True, style="bold", min_width=8)
    table.add_column("state", no_wrap=True, min_width=9)
    table.add_column("gRPC", no_wrap=True, min_width=14)
    table.add_column("model", no_wrap=True, max_width=48, overflow="ellipsis")
    table.add_column("warm", justify="right")
    table.add_column("cold starts", justify="right")
    table.add_column("requests", justify="right")
    table.add_column("hit ratio", justify="right")
    table.add_column("p99 (est.)", justify="right")
    colours = {"up": "green", "not ready": "yellow", "down": "red"}
    for status in statuses:
        e = status.endpoints
        state = f"[{colours[status.state]}]{status.state}[/]"
        grpc = e.grpc
        if not status.models:
            why = _short(status.error) if not status.answers else status.admin_error or "no models"
            table.add_row(e.name, state, grpc, f"[dim]{why}[/]", "-", "-", "-", "-", "-")
            continue
        for i, (model, figures) in enumerate(status.models.items()):
            p99, above = figures.p99()
            warm = str(figures.warm) + (f" (+{figures.starting} starting)" if figures.starting else "")
            table.add_row(
                e.name if i == 0 else "",
                state if i == 0 else "",
                grpc if i == 0 else "",
                model,
                warm,
                str(figures.cold_starts),
                str(figures.requests),
                "-" if figures.hit_ratio is None else f"{figures.hit_ratio:.0%}",
                "-" if p99 is None else (">" if above else "") + _duration(p99),
            )
    console.print(table)
    console.print(
        "[dim]hit ratio: cache hits (L1 + Redis) / OK requests; p99 (est.): estimated from the latency histogram's "
        "buckets (interpolated within one); both since each gateway started[/]",
        soft_wrap=True,
    )


def run(args: argparse.Namespace) -> int:
    try:
        layout, entry, source, warning = _find_stack(args)
    except (TopologyError, ValueError) as exc:
        print(f"edgeinfer status: {str(exc).replace(chr(10), '; ')}", file=sys.stderr)
        return 2
    with ThreadPoolExecutor(max_workers=max(1, len(layout))) as pool:
        entry_probe = pool.submit(server_ready, entry, args.timeout)
        statuses = list(pool.map(lambda e: probe(e, args.timeout), layout))
        entry_ready, entry_error = entry_probe.result()
    if args.json:
        report = {
            "source": source,
            "warning": warning,
            "entry": {"address": entry, "ready": bool(entry_ready), "error": entry_error},
            "regions": [s.as_dict() for s in statuses],
        }
        print(json.dumps(report, indent=2))
    else:
        console = Console(highlight=False, width=wide_console_width())
        state = "[green]up[/]" if entry_ready else f"[red]down[/] ({_short(entry_error)})"
        console.print(f"entry (Envoy): {entry} {state}", soft_wrap=True)
        render(statuses, source, warning, console)
    return 0 if entry_ready and all(s.ready for s in statuses) else EXIT_SOME_DOWN
