"""`edgeinfer deploy MODEL`: the `kn service create` of edgeinfer, for one region or all of them.

It builds the model's Knative Service for each region, validates it (CRD schema and webhook rules) before
anything is sent, and with --dry-run prints it (`-o yaml|json`). Otherwise it applies it server-side to each
region's cluster at once and waits for Ready, showing progress; one region's failure never hides another's.
The flags follow `kn service create`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edgeinfer import knative_names as n
from edgeinfer.functions.config import Autoscaling, ConfigError, ModelConfig, load_config
from edgeinfer.knative.deployer import Cluster, ClusterError, Progress, wait_ready
from edgeinfer.knative.manifest import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL_REPO_URI,
    METRICS,
    BuiltService,
    EngineCache,
    ServiceOptions,
    Toleration,
    TrafficTarget,
    build_service,
)
from edgeinfer.knative.targets import (
    UsageError,
    add_target_arguments,
    cluster_for,
    per_region,
    selected_regions,
    table,
    topology_from,
)
from edgeinfer.knative.validate import UnknownPolicy, add_allow_argument, check_allowed, errors, validate
from edgeinfer.regions.topology import Region
from edgeinfer.version import __version__

DEFAULT_WAIT_TIMEOUT_S = 600.0
# Flag → the Autoscaling field (Knative's annotation name) it overrides.
SCALE_FLAGS = {
    "scale_min": ("--scale-min", "min-scale"),
    "scale_max": ("--scale-max", "max-scale"),
    "scale_init": ("--scale-init", "initial-scale"),
    "scale_target": ("--scale-target", "target"),
    "scale_utilization": ("--scale-utilization", "target-utilization-percentage"),
    "scale_window": ("--scale-window", "window"),
    "concurrency_limit": ("--concurrency-limit", "container-concurrency"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="the model to deploy (a directory of the model repository)")
    add_target_arguments(parser)
    what = parser.add_argument_group("the function")
    what.add_argument(
        "--image",
        default=os.environ.get("EDGEINFER_FUNCTION_IMAGE", DEFAULT_IMAGE),
        help=f"function image (default $EDGEINFER_FUNCTION_IMAGE, then {DEFAULT_IMAGE})",
    )
    what.add_argument(
        "--model-repo",
        type=Path,
        help="local model repository to read the model's config.yaml and version from (default: the topology's)",
    )
    what.add_argument(
        "--model-repo-uri",
        default=DEFAULT_MODEL_REPO_URI,
        help=f"where the function loads the repository from, inside the pod (default {DEFAULT_MODEL_REPO_URI})",
    )
    what.add_argument(
        "--version",
        dest="model_version",
        metavar="V",
        help="the model version the revision serves, and only it (default: the repository's latest)",
    )
    what.add_argument("--service-name", help="Knative Service name (default: the model's name)")
    what.add_argument("--revision-name", help="name of the new revision ('<service>-<suffix>'; default: generated)")
    scale = parser.add_argument_group("autoscaling (defaults: the model's config.yaml autoscaling block)")
    scale.add_argument("--scale-min", type=int, metavar="N", help="min-scale: instances kept even when idle")
    scale.add_argument("--scale-max", type=int, metavar="N", help="max-scale (0: no limit)")
    scale.add_argument("--scale-init", type=int, metavar="N", help="initial-scale: instances of a new revision")
    scale.add_argument("--scale-target", type=float, metavar="N", help="target: concurrent requests per instance")
    scale.add_argument("--scale-utilization", type=float, metavar="P", help="target-utilization-percentage")
    scale.add_argument("--scale-window", metavar="D", help="window: e.g. 60s")
    scale.add_argument("--scale-metric", choices=METRICS, default="concurrency", help="metric (default concurrency)")
    scale.add_argument("--concurrency-limit", type=int, metavar="N", help="containerConcurrency: hard limit (0: none)")
    pod = parser.add_argument_group("the pod")
    pod.add_argument(
        "--limit", action="append", default=[], metavar="K=V[,K=V]", help="resource limits, e.g. nvidia.com/gpu=1"
    )
    pod.add_argument(
        "--request", action="append", default=[], metavar="K=V[,K=V]", help="resource requests, e.g. cpu=2,memory=4Gi"
    )
    pod.add_argument("--timeout", type=int, metavar="S", help="timeoutSeconds: longest request (default 300)")
    pod.add_argument("--engine-cache-pvc", metavar="CLAIM", help="keep TensorRT engines on this PVC (feature flags)")
    pod.add_argument("--engine-cache-size", default="10Gi", help="emptyDir size limit of the engine cache")
    pod.add_argument("--node-selector", action="append", default=[], metavar="K=V", help="nodeSelector (feature flag)")
    pod.add_argument(
        "--toleration", action="append", default=[], metavar="KEY[=VALUE][:EFFECT]", help="toleration (feature flag)"
    )
    pod.add_argument("--runtime-class", help="runtimeClassName, e.g. nvidia (feature flag)")
    pod.add_argument("--cluster-local", action="store_true", help="reachable only inside the cluster")
    traffic = parser.add_argument_group("traffic")
    traffic.add_argument(
        "--traffic",
        action="append",
        default=[],
        metavar="REV=PCT",
        help="share of traffic per revision; @latest is the latest ready revision (repeat; must add up to 100)",
    )
    traffic.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="[REV=]TAG",
        help="tag a revision (default @latest) for its own URL",
    )
    run = parser.add_argument_group("running")
    run.add_argument("--dry-run", action="store_true", help="validate and print the manifests; send nothing")
    add_allow_argument(run)
    run.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="with --dry-run: format")
    run.add_argument("--force-conflicts", action="store_true", help="take over fields another field manager owns")
    run.add_argument("--no-wait", action="store_true", help="apply and return without waiting for Ready")
    run.add_argument(
        "--wait-timeout",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        help=f"seconds to wait for Ready (default {DEFAULT_WAIT_TIMEOUT_S:g})",
    )


# --- flags → options ---------------------------------------------------------------------------------------


def _pairs(values: Sequence[str], flag: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        for item in filter(None, (part.strip() for part in value.split(","))):
            key, equals, text = item.partition("=")
            if not equals or not key or not text:
                raise UsageError(f"{flag} {item!r}: write KEY=VALUE, e.g. {flag} nvidia.com/gpu=1")
            pairs[key] = text
    return pairs


def _toleration(text: str) -> Toleration:
    spec, _, effect = text.partition(":")
    key, equals, value = spec.partition("=")
    if not key:
        raise UsageError(f"--toleration {text!r}: write KEY[=VALUE][:EFFECT], e.g. nvidia.com/gpu:NoSchedule")
    if effect not in ("", "NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise UsageError(f"--toleration {text!r}: effect must be NoSchedule, PreferNoSchedule or NoExecute")
    return Toleration(key, effect or "NoSchedule", value if equals else None)


def _traffic(args: argparse.Namespace) -> tuple[TrafficTarget, ...]:
    targets: list[TrafficTarget] = []
    for text in args.traffic:
        revision, equals, percent = text.partition("=")
        if not equals or not revision or not percent.isdigit():
            raise UsageError(f"--traffic {text!r}: write REVISION=PERCENT or @latest=PERCENT, e.g. @latest=10")
        targets.append(TrafficTarget(None if revision == "@latest" else revision, int(percent)))
    if not targets and args.tag:
        targets.append(TrafficTarget(None, 100))
    for text in args.tag:
        revision, equals, tag = text.rpartition("=") if "=" in text else ("@latest", "=", text)
        if not tag:
            raise UsageError(f"--tag {text!r}: write TAG or REVISION=TAG, e.g. --tag canary")
        wanted = None if revision == "@latest" else revision
        for i, target in enumerate(targets):
            if target.revision == wanted and target.tag is None:
                targets[i] = replace(target, tag=tag)
                break
        else:
            targets.append(TrafficTarget(wanted, 0, tag))  # a tag alone: its own URL, no share of traffic
    return tuple(targets)


def _model_config(args: argparse.Namespace, model_repo: Path | None) -> tuple[ModelConfig, str | None]:
    """The model's config.yaml and latest version label, from the local repository when there is one."""
    if model_repo is None:
        return ModelConfig(), None
    model_dir = model_repo / args.model
    if not model_dir.is_dir():
        if args.model_repo is None:
            return ModelConfig(), None  # the topology's repository need not hold every model
        raise UsageError(f"--model-repo {model_repo}: no model '{args.model}' (expected {model_dir}/<version>/)")
    try:
        config = load_config(model_dir / "config.yaml")
    except ConfigError as error:
        raise UsageError(str(error)) from None
    labels = [d.name for d in model_dir.iterdir() if (d / "model.onnx").is_file()]
    labels.sort(key=lambda label: (0, int(label), "") if label.isdigit() else (1, 0, label))
    wanted = getattr(args, "model_version", None)
    if wanted is not None:
        if wanted not in labels:
            raise UsageError(
                f"--version {wanted}: model '{args.model}' in {model_repo} has no version {wanted} "
                f"(it has: {', '.join(labels) or 'none'})"
            )
        return config, wanted
    return config, (labels[-1] if labels else None)


def _autoscaling(args: argparse.Namespace, base: Autoscaling) -> Autoscaling:
    overrides = {
        knob: getattr(args, attr) for attr, (_, knob) in SCALE_FLAGS.items() if getattr(args, attr) is not None
    }
    if not overrides:
        return base
    try:
        return Autoscaling.model_validate({**base.model_dump(by_alias=True), **overrides})
    except ValidationError as error:
        by_knob = {knob: flag for flag, knob in SCALE_FLAGS.values()}
        problems = []
        for item in error.errors(include_url=False):
            knob = str(item["loc"][0]) if item["loc"] else ""
            message = str(item["msg"]).removeprefix("Value error, ")
            where = by_knob.get(knob, f"the model's config.yaml autoscaling.{knob}" if knob else "autoscaling")
            problems.append(f"{where}: {message}")
        raise UsageError("; ".join(problems)) from None


def service_options(args: argparse.Namespace, model_repo: Path | None) -> ServiceOptions:
    config, version = _model_config(args, model_repo)
    # --version without a local repository to check it against: taken as given (the pod's repository decides).
    version = version or getattr(args, "model_version", None)
    defaults = ServiceOptions()
    requests = {**defaults.requests, **_pairs(args.request, "--request")}
    limits = {**defaults.limits, **_pairs(args.limit, "--limit")}
    return ServiceOptions(
        image=args.image,
        namespace=args.namespace,
        service_name=args.service_name,
        model_version=version,
        # The revision serves only this version (EDGEINFER_MODEL_VERSION): a later version added to the repository
        # reaches callers through a rollout's candidate revision, never by a restart of this one.
        pinned_version=version,
        model_repo_uri=args.model_repo_uri,
        autoscaling=_autoscaling(args, config.autoscaling),
        scale_metric=args.scale_metric,
        timeout_seconds=args.timeout if args.timeout is not None else defaults.timeout_seconds,
        requests=requests,
        limits=limits,
        execution_providers=tuple(config.execution_providers),
        traffic=_traffic(args),
        revision_name=args.revision_name,
        engine_cache=EngineCache(args.engine_cache_pvc, args.engine_cache_size),
        node_selector=_pairs(args.node_selector, "--node-selector"),
        tolerations=tuple(_toleration(t) for t in args.toleration),
        runtime_class=args.runtime_class,
        cluster_local=args.cluster_local,
    )


def build_all(args: argparse.Namespace, regions: Sequence[Region], model_repo: Path | None) -> list[BuiltService]:
    options = service_options(args, model_repo)
    try:
        return [build_service(args.model, region.name, options) for region in regions]
    except ValueError as error:
        raise UsageError(str(error)) from None


# --- output ------------------------------------------------------------------------------------------------


def render(built: Sequence[BuiltService], regions: Sequence[Region], output: str, model: str) -> str:
    """The manifests as `kubectl apply -f` reads them: YAML documents with a comment each, or a JSON List."""
    if output == "json":
        if len(built) == 1:
            return json.dumps(built[0].manifest, indent=2) + "\n"
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": [b.manifest for b in built]}, indent=2) + "\n"
    documents = []
    for service, region in zip(built, regions, strict=True):
        context = f" --context {region.kube_context}" if region.kube_context else " --context <context of the region>"
        header = (
            f"# edgeinfer deploy {model} --region {region.name} (edgeinfer {__version__})\n"
            f"# equals: kubectl apply --server-side --field-manager {n.FIELD_MANAGER}{context} -f <this document>\n"
        )
        documents.append(header + yaml.safe_dump(service.manifest, sort_keys=False))
    return "---\n".join(documents)


def _report_problems(built: Sequence[BuiltService], allow: Sequence[str], out: Any) -> bool:
    """Print notes, warnings and errors (merged across regions); True when there is an error."""
    seen: dict[str, list[str]] = {}
    failed = False
    for service in built:
        for note in service.notes:
            seen.setdefault(f"note: {note}", []).append(service.region)
        for problem in validate(service.manifest, allow=allow):
            failed |= problem in errors([problem])
            seen.setdefault(f"{problem.label}: {problem}", []).append(service.region)
    for line, where in seen.items():
        print(f"edgeinfer deploy: [{', '.join(where)}] {line}", file=out)
    return failed


# --- deploying ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployed:
    service: str
    revision: str | None
    url: str | None
    generation: int


class Reporter:
    """Progress per region: a live rich display on a terminal, one line per change otherwise."""

    def __init__(self, regions: Sequence[str], stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._regions = list(regions)

    @contextmanager
    def running(self) -> Iterator[Progress]:
        if not self.live:
            yield self.plain
            return
        from rich.console import Console
        from rich.progress import Progress as RichProgress
        from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

        self._progress = RichProgress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description:<12}"),
            TextColumn("{task.fields[state]}"),
            TimeElapsedColumn(),
            console=Console(file=self.stream),
        )
        with self._progress:
            for region in self._regions:
                self._tasks[region] = self._progress.add_task(region, total=None, state="connecting")
            yield self.rich
            for task in self._tasks.values():
                self._progress.update(task, total=1, completed=1)

    def plain(self, region: str, state: str) -> None:
        with self._lock:
            print(f"[{region}] {state}", file=self.stream, flush=True)

    def rich(self, region: str, state: str) -> None:
        self._progress.update(self._tasks[region], state=state)


def deploy_region(cluster: Cluster, service: BuiltService, args: argparse.Namespace, progress: Progress) -> Deployed:
    region = cluster.region
    # The cluster's own ConfigMaps (feature flags, defaults, autoscaler) decide now, before anything is sent; a
    # Service it holds already makes this an update, judged against it as Knative's webhook would.
    try:
        existing = cluster.get(service.name, service.namespace)
    except ClusterError:
        existing = None  # not readable: judged as a create; the apply then names what is wrong
    refused = errors(validate(service.manifest, cluster.knative_config(), args.allow, existing))
    if refused:
        raise ClusterError(region, "; ".join(str(p) for p in refused))
    progress(region, f"applying Service '{service.name}' (server-side, field manager {n.FIELD_MANAGER})")
    applied = cluster.apply(service.manifest, force=args.force_conflicts)
    generation = int(applied.get("metadata", {}).get("generation") or 1)
    progress(region, f"applied generation {generation}")
    if args.no_wait:
        return Deployed(service.name, None, None, generation)
    state = wait_ready(cluster, service.name, service.namespace, generation, args.wait_timeout, progress)
    if state.state != "ready":
        raise ClusterError(region, state.detail)
    progress(region, f"Ready: {state.revision} at {state.url or '(no URL yet)'}")
    return Deployed(service.name, state.revision, state.url, generation)


def run(args: argparse.Namespace) -> int:
    try:
        topology = topology_from(args)
        regions = selected_regions(args, topology)
        model_repo = args.model_repo or (topology.model_repo if topology.model_repo.is_dir() else None)
        built = build_all(args, regions, model_repo)
        check_allowed(args.allow)
    except (UsageError, UnknownPolicy) as error:
        print(f"edgeinfer deploy: {error}", file=sys.stderr)
        return 2
    if _report_problems(built, args.allow, sys.stderr):
        print("edgeinfer deploy: nothing was sent; fix the errors above", file=sys.stderr)
        return 1
    if args.dry_run:
        sys.stdout.write(render(built, regions, args.output, args.model))
        return 0

    by_region = {service.region: service for service in built}
    reporter = Reporter([r.name for r in regions])

    with reporter.running() as progress:

        def work(region: Region) -> Deployed:
            cluster = cluster_for(region, args)
            try:
                return deploy_region(cluster, by_region[region.name], args, progress)
            finally:
                cluster.close()

        outcomes = per_region(regions, work)

    rows = [["REGION", "SERVICE", "STATE", "REVISION", "URL / REASON"]]
    for outcome in outcomes:
        if outcome.value is not None:
            done = outcome.value
            state = "Applied" if args.no_wait else "Ready"
            rows.append([outcome.region, done.service, state, done.revision or "-", done.url or "-"])
        else:
            rows.append([outcome.region, by_region[outcome.region].name, "FAILED", "-", outcome.error or ""])
    print(table(rows))
    return 0 if all(o.error is None for o in outcomes) else 1
