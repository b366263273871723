"""The `edgeinfer` command line. Only the chosen subcommand's component is imported, so a
function's cold start does not pay for the gateway's imports."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edgeinfer.version import __version__

# name -> (module under edgeinfer with add_arguments(parser) and run(args), help)
COMMANDS: dict[str, tuple[str, str]] = {
    "function": ("functions.server", "serve an ONNX model repository over the Open Inference Protocol"),
    "examples": ("functions.examples", "write the example model repository (fraud, ranker)"),
    "gateway": ("gateway.server", "the regional gateway: prediction cache in front of inference functions"),
    "apikey": ("gateway.auth", "make an API key for a tenant and print the digest for the gateway's --api-keys file"),
    "bench": ("loadgen.cli", "open-loop load generator with HDR latency histograms"),
    "up": ("stack.up_cli", "run the multi-region stack on this machine (Envoy, Redis + gateway per region)"),
    "status": ("stack.status_cli", "each region: answers?, warm instances, cold starts, hit ratio, p99"),
    "deploy": ("knative.deploy_cli", "deploy a model as a Knative Service per region (validated; --dry-run -o yaml)"),
    "validate": (
        "knative.validate_cli",
        "check Knative Service manifests offline as Knative's webhook would, plus policies",
    ),
    "services": ("knative.services_cli", "the model Services on Knative per region: list, describe, delete"),
    "envoy-config": ("regions.envoy_cli", "write the Envoy bootstrap (priority failover, EDS files) of one edge"),
    "rollout": (
        "rollout.cli",
        "canary a model version: shift traffic in steps, judge errors, p99 and answers, roll back or promote",
    ),
    "drill": (
        "rollout.drill_cli",
        "fault a region (kill, blackhole, slow, flap) or roll out a canary (bad-canary-*, good-canary) under load; "
        "report",
    ),
    "tune": ("tuner.cli_tune", "per-region warm-pool plan (min-scale per model) holding the p99 SLO; --apply sets it"),
    "simulate": ("tuner.cli_simulate", "replay a trace through a model of the regions and compare warm-pool policies"),
    "trace": ("tuner.cli_trace", "generate, inspect, import (from gateway spans) and replay request traces"),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeinfer", description="Serverless, edge-cached inference.")
    parser.add_argument("--version", action="version", version=f"edgeinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            module = importlib.import_module(f"edgeinfer.{module_name}")
            module.add_arguments(command)
            command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    chosen = next((a for a in args_list if not a.startswith("-")), None)
    args = build_parser(chosen if chosen in COMMANDS else None).parse_args(args_list)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
