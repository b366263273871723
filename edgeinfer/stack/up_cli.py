"""`edgeinfer up`: the multi-region stack on this machine (edgeinfer/stack/local.py), in the foreground until
Ctrl-C or SIGTERM. It prints the endpoints once every region and the entry answer ready; the state file
(STATE/up.json) lets `edgeinfer status` find it."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgeinfer.gateway.settings import parse_workers
from edgeinfer.regions.topology import TopologyError, default_topology, load_topology
from edgeinfer.stack.local import (
    DEFAULT_PROMETHEUS_PORT,
    DEFAULT_SCRAPE_INTERVAL,
    LocalStack,
    PrometheusNotFound,
    Stopped,
    UpError,
    check_scrape_interval,
)
from edgeinfer.stack.procfs import process_age, set_child_subreaper, wide_console_width
from edgeinfer.stack.state import DEFAULT_STATE_DIR


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
    parser.add_argument(
        "--workers",
        type=_workers_flag,
        default=1,
        metavar="N|auto",
        help="gateway processes per region on its ports (`edgeinfer gateway --workers`; default 1); each worker "
        "has its own L1 and its own pool of functions",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (the `prometheus` on PATH, or $EDGEINFER_PROMETHEUS) on 127.0.0.1, scraping "
        "every region's gateway admin port, with deploy/prometheus/rules.yml; data under STATE/prometheus",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=DEFAULT_PROMETHEUS_PORT,
        help=f"Prometheus's port on 127.0.0.1 with --prometheus (default {DEFAULT_PROMETHEUS_PORT})",
    )
    parser.add_argument(
        "--prometheus-scrape-interval",
        type=_scrape_interval_flag,
        default=DEFAULT_SCRAPE_INTERVAL,
        metavar="DURATION",
        help=f"how often Prometheus scrapes and evaluates its rules, e.g. 1s (default {DEFAULT_SCRAPE_INTERVAL})",
    )


def _workers_flag(text: str) -> int:
    try:
        return parse_workers(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _scrape_interval_flag(text: str) -> str:
    try:
        return check_scrape_interval(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    if args.prometheus and not 1 <= args.prometheus_port <= 65535:
        return fail(f"--prometheus-port {args.prometheus_port}: not a port (1-65535)", 2)
    model_repo = (args.model_repo or topology.model_repo).resolve()
    state_dir = args.state_dir.resolve()
    stack = LocalStack(
        topology,
        args.topology,
        entry_port,
        model_repo,
        state_dir,
        args.timeout,
        console,
        args.edge,
        args.workers,
        prometheus_port=args.prometheus_port if args.prometheus else None,
        scrape_interval=args.prometheus_scrape_interval,
    )
    stack.install_signal_handlers()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        stack.preflight()
    except PrometheusNotFound as exc:
        return fail(str(exc), 2)
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
