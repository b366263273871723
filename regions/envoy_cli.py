"""`edgeinfer envoy-config`: write the Envoy bootstrap (and its EDS files) of one edge of a topology."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgeinfer.regions.envoy_config import EnvoyPorts, Timings, write_config
from edgeinfer.regions.topology import TopologyError, default_topology, load_topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", type=Path, help="topology file (default: the default topology of `up`)")
    parser.add_argument("--edge", required=True, help="the region this Envoy runs in: its priority 0")
    parser.add_argument("-o", "--output", type=Path, required=True, help="bootstrap file; EDS files go to ./eds/")
    parser.add_argument("--listen", default="127.0.0.1", help="listener address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listener port (default: the topology's entry)")
    parser.add_argument("--admin-port", type=int, help="admin port on 127.0.0.1 (default: the topology's)")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 SLO the per-try timeout derives from")
    parser.add_argument("--validate", action="store_true", help="then run `envoy --mode validate` on it")
    parser.add_argument(
        "--relative",
        action="store_true",
        help="name the EDS files relative to the bootstrap's folder (run Envoy there)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        topology = load_topology(args.topology) if args.topology else default_topology()
    except TopologyError as exc:
        print(f"edgeinfer envoy-config: {exc}".replace("\n", "; "), file=sys.stderr)
        return 2
    ports = EnvoyPorts(
        args.listen,
        args.port if args.port is not None else topology.entry,
        args.admin_port if args.admin_port is not None else topology.envoy_admin,
    )
    try:
        written = write_config(
            topology, args.edge, args.output, ports, Timings(slo_ms=args.slo_ms), relative=args.relative
        )
    except ValueError as exc:
        print(f"edgeinfer envoy-config: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if args.validate:
        from edgeinfer.regions.envoy_binary import EnvoyNotFound, validate

        try:
            ok, output = validate(args.output)
        except EnvoyNotFound as exc:
            print(f"edgeinfer envoy-config: {exc}", file=sys.stderr)
            return 1
        print(output)
        return 0 if ok else 1
    return 0
