"""`edgeinfer rollout`: an SLO-gated canary with automatic rollback (docs/rollout.md).

    edgeinfer rollout MODEL --to VERSION [--region R | --all-regions] [--steps 10,25,50,100] [--interval 30s]
        [--max-p99-ms 100] [--max-error-rate 0.01] [--min-requests 50] [--shadow-percent 5] [--max-disagreement 0.01]
        [--backend local|knative] [--prometheus URL] [--report FILE]
    edgeinfer rollout status|abort|promote MODEL [--region R]
    edgeinfer rollout pin MODEL --to VERSION [--region R]

Exit 0: promoted (status: answered; abort/promote: done). 1: rolled back, aborted, or refused (the message on
stderr; a refusal changes nothing). 2: usage.
"""

from __future__ import annotations

import argparse
import itertools
import re
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rich.console import Console

from edgeinfer.regions.topology import TopologyError, load_topology, split_hostport
from edgeinfer.rollout.analysis import Thresholds
from edgeinfer.rollout.controller import RolloutConfig
from edgeinfer.rollout.errors import RolloutError

ACTIONS = ("status", "abort", "promote", "pin")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_VERSION = re.compile(r"^[1-9][0-9]*$")


def duration(text: str) -> float:
    """`30s`, `2m`, `500ms`, `1h` or plain seconds → seconds (> 0)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: write e.g. 30s, 2m, 500ms or 1h")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a duration must be above 0")
    return seconds


def steps(text: str) -> tuple[int, ...]:
    """`10,25,50,100`: increasing integer percents in 1-100, ending at 100."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: steps are comma-separated integer percents, e.g. 10,25,50,100"
        ) from None
    if any(not 1 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each step is a percent in 1-100")
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: steps must increase")
    if values[-1] != 100:
        raise argparse.ArgumentTypeError(f"{text!r}: the last step must be 100 (the promotion follows it)")
    return values


def version(text: str) -> str:
    if not _VERSION.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a model version (a positive integer, as in models/fraud/2)")
    return text


def _bounded(low: float, high: float | None, what: str, integer: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if integer else 'a number'}") from None
        if value != value or value < low or (high is not None and value > high):
            bounds = f"in {low:g}-{high:g}" if high is not None else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"{text!r}: {what} must be {bounds}")
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be above 0")
    return value


def _address(text: str) -> str:
    try:
        split_hostport(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _url(text: str) -> str:
    if not re.match(r"^https?://[^/\s]+", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an http:// URL (e.g. http://127.0.0.1:9090)")
    return text.rstrip("/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.usage = (
        "edgeinfer rollout MODEL --to VERSION [--region R | --all-regions] [options]\n"
        "       edgeinfer rollout status|abort|promote MODEL [--region R]\n"
        "       edgeinfer rollout pin MODEL --to VERSION [--region R]"
    )
    parser.set_defaults(parser=parser)
    parser.add_argument("words", nargs="+", metavar="MODEL", help="MODEL, or status|abort|promote|pin MODEL")
    parser.add_argument("--to", type=version, metavar="VERSION", help="the candidate version (a rollout needs it)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--region", help="one region (default: the topology's first; status/abort/promote: all)")
    where.add_argument(
        "--all-regions", action="store_true", help="every region, one at a time, in the topology's order"
    )
    parser.add_argument(
        "--steps", type=steps, default=(10, 25, 50, 100), help="candidate percents (default: 10,25,50,100)"
    )
    parser.add_argument("--interval", type=duration, default=30.0, help="time per step: 30s, 2m, 500ms (default: 30s)")
    parser.add_argument("--max-p99-ms", type=_positive, default=100.0, help="the candidate's p99 limit (default: 100)")
    parser.add_argument(
        "--max-error-rate",
        type=_bounded(0, 1, "--max-error-rate"),
        default=0.01,
        help="server errors per request, client errors not counted (default: 0.01)",
    )
    parser.add_argument(
        "--min-requests",
        type=_bounded(1, None, "--min-requests", integer=True),
        default=50,
        help="the candidate's requests (and shadow comparisons) a step needs to be judged (default: 50)",
    )
    parser.add_argument(
        "--shadow-percent",
        type=_bounded(0, 100, "--shadow-percent"),
        default=5.0,
        help="share of the baseline's requests copied to the candidate to compare answers; 0: off (default: 5)",
    )
    parser.add_argument(
        "--max-disagreement",
        type=_bounded(0, 1, "--max-disagreement"),
        default=0.01,
        help="share of shadow answers that may differ from the baseline's (default: 0.01)",
    )
    parser.add_argument(
        "--backend", choices=("local", "knative"), default="local", help="where versions run (default: local)"
    )
    parser.add_argument(
        "--namespace", default=None, help="with --backend knative: the Services' namespace (default: default)"
    )
    parser.add_argument(
        "--kubeconfig",
        default=None,
        help="with --backend knative: kubeconfig file (default: $KUBECONFIG, ~/.kube/config)",
    )
    parser.add_argument("--prometheus", type=_url, metavar="URL", help="judge with PromQL on this Prometheus")
    parser.add_argument("--report", type=Path, metavar="FILE", help="JSON report; the PNG goes beside it")
    parser.add_argument("--topology", type=Path, help="topology file (default: the default topology of `edgeinfer up`)")
    parser.add_argument(
        "--admin", type=_address, metavar="ADDR", help="one gateway's admin address, instead of a topology"
    )
    parser.add_argument(
        "--grpc", type=_address, metavar="ADDR", help="with --admin: that gateway's gRPC address (metadata)"
    )


def _fail(message: str) -> int:
    Console(file=sys.stderr, highlight=False).print(f"edgeinfer rollout: {message}", soft_wrap=True, markup=False)
    return 1


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the controller rolls the current region back, as for Ctrl-C


def run(args: argparse.Namespace) -> int:
    from edgeinfer.rollout.runner import RolloutOptions, run_action, run_pin, run_rollout, run_status

    parser: argparse.ArgumentParser | None = getattr(args, "parser", None)
    words: list[str] = args.words
    if len(words) == 2 and words[0] in ACTIONS:
        action, model = words
    elif len(words) == 1:
        action, model = "rollout", words[0]
    else:
        return _usage(parser, f"expected MODEL or status|abort|promote|pin MODEL, got {' '.join(words)!r}")
    if action == "rollout" and args.to is None:
        return _usage(parser, "--to VERSION is required (e.g. edgeinfer rollout fraud --to 2)")
    if action == "pin" and args.to is None:
        return _usage(parser, "pin needs --to VERSION: the version every unversioned request goes to")
    if action not in ("rollout", "pin") and args.to is not None:
        return _usage(parser, f"{action} takes no --to")
    if action != "rollout" and args.all_regions:
        return _usage(parser, f"{action} acts on every region unless --region names one; drop --all-regions")
    if args.grpc is not None and args.admin is None:
        return _usage(parser, "--grpc goes with --admin")
    try:
        topology = load_topology(args.topology) if args.topology else None
    except TopologyError as exc:
        return _fail(str(exc).replace("\n", "; "))
    config = RolloutConfig(
        steps=tuple(args.steps),
        interval_s=args.interval,
        thresholds=Thresholds(
            max_p99_ms=args.max_p99_ms,
            max_error_rate=args.max_error_rate,
            min_requests=int(args.min_requests),
            max_disagreement=args.max_disagreement,
        ),
        shadow_percent=args.shadow_percent,
    )
    options = RolloutOptions(
        model=model,
        candidate=args.to or "",
        config=config,
        region=args.region,
        all_regions=args.all_regions,
        backend=args.backend,
        namespace=args.namespace,
        kubeconfig=args.kubeconfig,
        prometheus=args.prometheus,
        report=args.report,
        topology=topology,
        admin=args.admin,
        grpc=args.grpc,
        command="edgeinfer rollout " + " ".join(shlex.quote(a) for a in sys.argv[2:]),
    )
    console = Console(highlight=False)
    try:
        if action == "status":
            found = run_status(options, console)
            return 0 if any(item.error is None for item in found) else 1
        if action == "pin":
            pinned = run_pin(options, console)
            return 0 if all(ok for _, ok in pinned) else 1
        if action in ("abort", "promote"):
            outcomes = run_action(action, options, console)
            return 0 if all(o.state in ("aborted", "promoted") for o in outcomes) else 1
        previous = signal.signal(signal.SIGTERM, _sigterm)
        try:
            result = run_rollout(options, console=console)
        finally:
            signal.signal(signal.SIGTERM, previous)
    except RolloutError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted")
    report = result.report
    failed = report.failure()
    if failed is not None:
        Console(file=sys.stderr, highlight=False).print(
            f"edgeinfer rollout: {failed.region}: {failed.state.replace('_', ' ')}: {failed.reason}",
            soft_wrap=True,
            markup=False,
        )
    if result.png is not None:
        console.print(f"report {options.report}, plot {result.png}", markup=False, soft_wrap=True)
    return result.code


def _usage(parser: argparse.ArgumentParser | None, message: str) -> int:
    if parser is not None:
        parser.error(message)  # exits 2
    Console(file=sys.stderr, highlight=False).print(f"edgeinfer rollout: {message}", markup=False)
    return 2
