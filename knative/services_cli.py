"""`edgeinfer services list|describe|delete`: the Knative Services edgeinfer deployed, region by region."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import yaml

from edgeinfer import knative_names as n
from edgeinfer.knative.deployer import ClusterError, readiness
from edgeinfer.knative.targets import (
    UsageError,
    add_target_arguments,
    cluster_for,
    per_region,
    selected_regions,
    table,
    topology_from,
)
from edgeinfer.regions.topology import Region

DELETE_WAIT_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="list|describe|delete")
    listing = actions.add_parser("list", help="the Services of every region (or --region R)")
    add_target_arguments(listing, all_by_default=True)
    describe = actions.add_parser("describe", help="one model's Service: revisions, traffic, conditions, scaling")
    describe.add_argument("model")
    describe.add_argument("--service-name", help="Knative Service name (default: the model's name)")
    describe.add_argument("-o", "--output", choices=("text", "yaml", "json"), default="text")
    add_target_arguments(describe, all_by_default=True)
    delete = actions.add_parser("delete", help="delete one model's Service (--region R or --all-regions)")
    delete.add_argument("model")
    delete.add_argument("--service-name", help="Knative Service name (default: the model's name)")
    delete.add_argument("--no-wait", action="store_true", help="return without waiting for it to be gone")
    add_target_arguments(delete)


def _ready(service: dict[str, Any]) -> tuple[str, str]:
    for condition in (service.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return str(condition.get("status", "Unknown")), str(condition.get("reason") or "")
    return "Unknown", ""


def _list(args: argparse.Namespace, regions: list[Region]) -> int:
    def work(region: Region) -> list[dict[str, Any]]:
        cluster = cluster_for(region, args)
        try:
            return cluster.list(args.namespace)
        finally:
            cluster.close()

    rows = [["REGION", "NAME", "MODEL", "READY", "LATEST", "URL", "REASON"]]
    failed = []
    for outcome in per_region(regions, work):
        if outcome.error is not None:
            failed.append(f"edgeinfer services: {outcome.region}: {outcome.error}")
            continue
        for service in outcome.value or []:
            labels = service["metadata"].get("labels") or {}
            status = service.get("status") or {}
            ready, reason = _ready(service)
            rows.append(
                [
                    outcome.region,
                    service["metadata"]["name"],
                    labels.get(n.LABEL_MODEL, "-"),
                    ready,
                    status.get("latestReadyRevisionName") or "-",
                    status.get("url") or "-",
                    reason,
                ]
            )
    print(table(rows))
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


def _describe_text(region: str, service: dict[str, Any]) -> str:
    meta, spec, status = service["metadata"], service.get("spec") or {}, service.get("status") or {}
    template = spec.get("template") or {}
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    container = ((template.get("spec") or {}).get("containers") or [{}])[0]
    generation = int(meta.get("generation") or 0)
    lines = [
        f"{region}: Service {meta['name']} in namespace {meta.get('namespace')}",
        f"  state:       {readiness(service, generation).detail}",
        f"  URL:         {status.get('url') or '-'}",
        f"  address:     {(status.get('address') or {}).get('url') or '-'}",
        f"  image:       {container.get('image', '-')}",
        f"  generation:  {generation} (observed {status.get('observedGeneration', '-')})",
        f"  revisions:   latest created {status.get('latestCreatedRevisionName') or '-'}, "
        f"latest ready {status.get('latestReadyRevisionName') or '-'}",
        "  traffic:",
    ]
    for target in status.get("traffic") or spec.get("traffic") or []:
        revision = target.get("revisionName") or ("@latest" if target.get("latestRevision") else "?")
        tag = f" tag {target['tag']}" if target.get("tag") else ""
        url = f" {target['url']}" if target.get("url") else ""
        lines.append(f"    {target.get('percent', 0):>3}% {revision}{tag}{url}")
    lines.append("  conditions:")
    for condition in status.get("conditions") or []:
        why = " ".join(filter(None, [condition.get("reason"), condition.get("message")]))
        lines.append(f"    {condition.get('type')}: {condition.get('status')} {why}".rstrip())
    lines.append("  autoscaling:")
    for key, value in annotations.items():
        if key.startswith(n.AUTOSCALING_PREFIX):
            lines.append(f"    {key.removeprefix(n.AUTOSCALING_PREFIX)}: {value}")
    concurrency = (template.get("spec") or {}).get("containerConcurrency")
    lines.append(f"    containerConcurrency: {concurrency}")
    return "\n".join(lines)


def _describe(args: argparse.Namespace, regions: list[Region], name: str) -> int:
    def work(region: Region) -> dict[str, Any]:
        cluster = cluster_for(region, args)
        try:
            service = cluster.get(name, args.namespace)
        finally:
            cluster.close()
        if service is None:
            raise ClusterError(region.name, f"no Service '{name}' in namespace '{args.namespace}'")
        return service

    outcomes = per_region(regions, work)
    found = {o.region: o.value for o in outcomes if o.value is not None}
    if args.output == "json":
        print(json.dumps(found, indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump(found, sort_keys=False), end="")
    else:
        print("\n\n".join(_describe_text(region, service) for region, service in found.items()))
    for outcome in outcomes:
        if outcome.error is not None:
            print(f"edgeinfer services: {outcome.region}: {outcome.error}", file=sys.stderr)
    return 0 if all(o.error is None for o in outcomes) else 1


def _delete(args: argparse.Namespace, regions: list[Region], name: str) -> int:
    def work(region: Region) -> str:
        cluster = cluster_for(region, args)
        try:
            cluster.delete(name, args.namespace)
            if args.no_wait:
                return "deletion requested"
            deadline = time.monotonic() + DELETE_WAIT_S
            while cluster.get(name, args.namespace) is not None:
                if time.monotonic() > deadline:
                    raise ClusterError(region.name, f"Service '{name}' still exists after {DELETE_WAIT_S:g}s")
                time.sleep(0.25)
            return "deleted"
        finally:
            cluster.close()

    status = 0
    for outcome in per_region(regions, work):
        if outcome.error is not None:
            print(f"edgeinfer services: {outcome.region}: {outcome.error}", file=sys.stderr)
            status = 1
        else:
            print(f"{outcome.region}: Service '{name}' {outcome.value}")
    return status


def run(args: argparse.Namespace) -> int:
    try:
        topology = topology_from(args)
        regions = selected_regions(args, topology, all_by_default=args.action != "delete")
        name = "" if args.action == "list" else (args.service_name or n.service_name(args.model))
    except (UsageError, ValueError) as error:
        print(f"edgeinfer services: {error}", file=sys.stderr)
        return 2
    if args.action == "list":
        return _list(args, regions)
    if args.action == "describe":
        return _describe(args, regions, name)
    return _delete(args, regions, name)
