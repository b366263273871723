"""`edgeinfer bench` flags and entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from edgeinfer.loadgen.options import BenchError, BenchOptions
from edgeinfer.loadgen.schedule import ARRIVALS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--target", required=True, help="HOST:PORT of the Open Inference Protocol gRPC endpoint")
    add("--model", required=True, help="model name")
    add("--model-version", default="", help="model version (default: the server's choice)")
    add("--rate", type=float, required=True, help="offered load, requests per second (all processes)")
    add("--duration", type=float, required=True, help="measured seconds of load")
    add("--warmup", type=float, default=0.0, help="seconds of load before measuring, not recorded")
    add("--arrival", choices=ARRIVALS, default="constant", help="arrival process (default: constant)")
    add(
        "--concurrency-limit",
        type=int,
        default=None,
        metavar="C",
        help="cap on outstanding requests (split across processes); waiting still counts as latency",
    )
    add("--processes", type=int, default=1, metavar="P", help="client processes (default: 1)")
    add("--channels", type=int, default=1, help="gRPC channels (TCP connections) per process (default: 1)")
    add("--batch-size", type=int, default=1, metavar="B", help="size of each -1 dimension (default: 1)")
    add(
        "--input",
        dest="inputs",
        action="append",
        default=[],
        metavar="NAME:DATATYPE:d1,d2,...",
        help="describe an input instead of reading model metadata (repeatable)",
    )
    add("--typed", action="store_true", help="send typed contents instead of raw_input_contents")
    add(
        "--unique", action="store_true", help="a counter in the first input makes every request distinct (cache misses)"
    )
    add(
        "--timeout-ms",
        type=float,
        default=10_000.0,
        help="per-request deadline from its intended send time (default: 10000)",
    )
    add("--connect-timeout", type=float, default=5.0, help="seconds to wait for a connection (default: 5)")
    add("--seed", type=int, default=1, help="seed for Poisson arrivals and payload data (default: 1)")
    add("--json", metavar="FILE", default=None, help="write the full report, with the HDR histogram, as JSON")
    add("--quiet", action="store_true", help="no progress and no table")


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        target=args.target,
        model=args.model,
        model_version=args.model_version,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
        arrival=args.arrival,
        concurrency_limit=args.concurrency_limit,
        processes=args.processes,
        channels=args.channels,
        batch_size=args.batch_size,
        inputs=tuple(args.inputs),
        typed=args.typed,
        unique=args.unique,
        timeout_ms=args.timeout_ms,
        connect_timeout=args.connect_timeout,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    from edgeinfer.loadgen.runner import run_bench

    try:
        report = run_bench(options_from_args(args), progress=not args.quiet)
    except BenchError as exc:
        print(f"edgeinfer bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("edgeinfer bench: interrupted", file=sys.stderr)
        return 130
    if args.json:
        report.write_json(args.json)
    if not args.quiet:
        from rich.console import Console

        from edgeinfer.loadgen.report import render

        render(report, Console())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="edgeinfer bench", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
