"""Which regions a command acts on, and the cluster of each: shared by `edgeinfer deploy` and `services`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from edgeinfer.knative.deployer import DEFAULT_REQUEST_TIMEOUT_S, Cluster, ClusterError, connect
from edgeinfer.knative.manifest import DEFAULT_NAMESPACE
from edgeinfer.regions.topology import DEFAULT_TOPOLOGY_FILE, Region, Topology, TopologyError, load_topology

T = TypeVar("T")


def add_target_arguments(parser: argparse.ArgumentParser, *, all_by_default: bool = False) -> None:
    where = parser.add_argument_group("regions and clusters")
    where.add_argument(
        "--region",
        action="append",
        default=[],
        metavar="R",
        help="a region of the topology (repeat for several)" + ("; default: all" if all_by_default else ""),
    )
    where.add_argument("--all-regions", action="store_true", help="every region of the topology")
    where.add_argument(
        "--topology",
        type=Path,
        default=Path(os.environ.get("EDGEINFER_TOPOLOGY", DEFAULT_TOPOLOGY_FILE)),
        help="regions with their kube_context and knative_domain (default $EDGEINFER_TOPOLOGY, then the built-in one)",
    )
    where.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
    where.add_argument(
        "-n", "--namespace", default=DEFAULT_NAMESPACE, help="namespace of the Services (default: default)"
    )
    where.add_argument(
        "--request-timeout",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        help=f"seconds to wait for the API server to answer one call (default {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )


class UsageError(ValueError):
    """A command line that cannot run; the message says what to change."""


def topology_from(args: argparse.Namespace) -> Topology:
    try:
        return load_topology(args.topology)
    except TopologyError as error:
        raise UsageError(str(error)) from None


def selected_regions(args: argparse.Namespace, topology: Topology, *, all_by_default: bool = False) -> list[Region]:
    if args.all_regions and args.region:
        raise UsageError("give --region R or --all-regions, not both")
    if args.all_regions or (all_by_default and not args.region):
        return list(topology.regions)
    if not args.region:
        raise UsageError(f"say where: --region R (one of {', '.join(topology.names)}) or --all-regions")
    chosen = []
    for name in dict.fromkeys(args.region):
        try:
            chosen.append(topology.region(name))
        except KeyError:
            raise UsageError(
                f"--region {name}: not in {args.topology} (its regions: {', '.join(topology.names)})"
            ) from None
    return chosen


def cluster_for(region: Region, args: argparse.Namespace) -> Cluster:
    if region.kube_context is None:
        raise ClusterError(
            region.name,
            f"no kube_context for region '{region.name}' in {args.topology}: set it to the kubeconfig context of "
            "that region's cluster",
        )
    kubeconfig = args.kubeconfig or os.environ.get("KUBECONFIG") or None
    if kubeconfig and os.pathsep in kubeconfig:
        kubeconfig = kubeconfig.split(os.pathsep)[0]  # the client reads one file
    return connect(region.name, region.kube_context, kubeconfig, args.request_timeout)


@dataclass(frozen=True)
class Outcome(Generic[T]):
    region: str
    value: T | None = None
    error: str | None = None


def per_region(regions: Sequence[Region], work: Callable[[Region], T]) -> list[Outcome[T]]:
    """Run `work` for every region at once; each region's ClusterError is its own outcome, in region order."""

    def one(region: Region) -> Outcome[T]:
        try:
            return Outcome(region.name, value=work(region))
        except ClusterError as error:
            return Outcome(region.name, error=error.message)

    with ThreadPoolExecutor(max_workers=max(1, len(regions)), thread_name_prefix="region") as pool:
        return list(pool.map(one, regions))


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns, the first row the header."""
    if not rows:
        return ""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return "\n".join(lines)
