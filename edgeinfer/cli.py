"""The `edgeinfer` command line. Each subcommand imports its component lazily."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _function(args: argparse.Namespace) -> int:
    from functions.server import run

    return run(args)


def _examples(args: argparse.Namespace) -> int:
    from functions.examples import run

    return run(args)


def _gateway(args: argparse.Namespace) -> int:
    from gateway.server import run

    return run(args)


def _bench(args: argparse.Namespace) -> int:
    from edgeinfer.loadgen.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeinfer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fn = sub.add_parser("function", help="serve an ONNX model repository over the Open Inference Protocol")
    from functions.server import add_arguments as add_function_arguments

    add_function_arguments(fn)
    fn.set_defaults(handler=_function)

    ex = sub.add_parser("examples", help="write the example model repository (fraud, ranker)")
    ex.add_argument("directory", help="where to write the repository")
    ex.add_argument("--force", action="store_true", help="overwrite models that already exist")
    ex.set_defaults(handler=_examples)

    gw = sub.add_parser("gateway", help="the regional gateway: cache in front of inference functions")
    from gateway.server import add_arguments as add_gateway_arguments

    add_gateway_arguments(gw)
    gw.set_defaults(handler=_gateway)

    bench = sub.add_parser("bench", help="open-loop load generator with HDR latency histograms")
    from edgeinfer.loadgen.cli import add_arguments as add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
