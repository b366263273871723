"""A rollout from its options: which regions (the topology, or one gateway's admin address), their traffic
backend and metrics source, the live view and the report. `run_rollout` is what `edgeinfer rollout` and the
drills call."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from edgeinfer.gateway.admin_client import AdminClient, AdminError
from edgeinfer.gateway.metrics import GATEWAY_READY
from edgeinfer.regions.topology import Region, Topology, default_topology
from edgeinfer.rollout.analysis import EmbeddedSource, MetricsSource, PrometheusSource
from edgeinfer.rollout.backends import (
    GatewayPolicy,
    KnativeTraffic,
    LocalTraffic,
    Plan,
    TrafficBackend,
    knative_service_traffic,
)
from edgeinfer.rollout.controller import (
    Clock,
    Observer,
    Observers,
    RegionEnv,
    RegionStatus,
    Rollout,
    RolloutConfig,
    SystemClock,
    abort,
    promote,
    status,
)
from edgeinfer.rollout.errors import RolloutError
from edgeinfer.rollout.live import LiveView
from edgeinfer.rollout.preflight import GrpcMetadata, MetadataReader
from edgeinfer.rollout.report import Recorder, RegionOutcome, RolloutReport, write

BACKENDS = ("local", "knative")


@dataclass
class RolloutOptions:
    """Everything a rollout needs. `region`: one region (default: the topology's first); `all_regions`: every
    region in the topology's order. `admin` (+ `grpc`): one gateway directly, instead of a topology."""

    model: str
    candidate: str
    config: RolloutConfig = field(default_factory=RolloutConfig)
    region: str | None = None
    all_regions: bool = False
    backend: str = "local"
    namespace: str | None = None  # --backend knative: the Services' namespace (None: Knative's default)
    kubeconfig: str | None = None  # --backend knative: None reads $KUBECONFIG, then ~/.kube/config
    prometheus: str | None = None
    report: Path | None = None
    topology: Topology | None = None  # None: the default topology (`edgeinfer up`'s)
    admin: str | None = None
    grpc: str | None = None
    baseline: str | None = None  # None: the version serving now (preflight.choose_baseline)
    command: str = ""


@dataclass
class RolloutResult:
    code: int  # 0 promoted everywhere, 1 otherwise
    report: RolloutReport
    png: Path | None = None


@dataclass(frozen=True)
class Target:
    name: str
    admin: str
    grpc: str | None
    region: Region | None


def region_from_metrics(admin: AdminClient) -> str:
    """The region a gateway serves, from the `region` label of its ready gauge."""
    try:
        text = admin.metrics()
    except AdminError as exc:
        raise RolloutError(f"the gateway's admin port does not answer: {exc}") from None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == GATEWAY_READY and sample.labels.get("region"):
                return sample.labels["region"]
    raise RolloutError(f"{admin.base}/metrics has no {GATEWAY_READY}{{region=...}}: is it an edgeinfer gateway?")


def targets(
    topology: Topology | None, region: str | None, all_regions: bool, admin: str | None, grpc: str | None
) -> list[Target]:
    """The regions a command acts on, in the topology's order: `region`, every region with `all_regions`, else
    the first (status, abort and promote pass all_regions when no region is named). With `admin`, that one
    gateway, its region read from its /metrics unless named. RolloutError for an unknown region or a region
    without an admin address."""
    if admin is not None:
        name = region or region_from_metrics(AdminClient(admin))
        return [Target(name, admin, grpc, None)]
    topology = topology or default_topology()
    if region is not None:
        if region not in topology.names:
            raise RolloutError(f"--region {region}: unknown region (known: {', '.join(topology.names)})")
        chosen = [topology.region(region)]
    elif all_regions:
        chosen = list(topology.regions)
    else:
        chosen = [topology.regions[0]]
    found = []
    for r in chosen:
        if r.gateway.admin is None:
            raise RolloutError(f"region {r.name} has no gateway admin address in the topology (gateway.admin)")
        found.append(Target(r.name, r.gateway.admin, r.gateway.grpc_address, r))
    return found


class _NoMetadata:
    def __init__(self, name: str) -> None:
        self.name = name

    def signature(self, model: str, version: str) -> Any:
        raise RolloutError(
            f"region {self.name}: no gRPC address to read the versions' metadata from: give --grpc with --admin"
        )


def env_for(
    target: Target,
    model: str,
    backend: str,
    prometheus: str | None,
    namespace: str | None = None,
    kubeconfig: str | None = None,
) -> RegionEnv:
    admin = AdminClient(target.admin)

    def policy() -> dict[str, Any]:
        return GatewayPolicy(admin, model).get()

    def make_backend(plan: Plan) -> TrafficBackend:
        if backend == "knative":
            service = knative_service_traffic(target.region, model, namespace=namespace, kubeconfig=kubeconfig)
            return KnativeTraffic(admin, plan, service)
        return LocalTraffic(admin, plan)

    def make_source(baseline: str, candidate: str) -> MetricsSource:
        if prometheus is not None:
            return PrometheusSource(prometheus, target.name, model, baseline, candidate)
        return EmbeddedSource(admin.metrics, model, baseline, candidate)

    check_source: Callable[[str, str], None] | None = None
    if prometheus is not None:
        url = prometheus

        def check_source(baseline: str, candidate: str) -> None:
            PrometheusSource(url, target.name, model, baseline, candidate).check_scraped()

    metadata: MetadataReader = GrpcMetadata(target.grpc) if target.grpc else _NoMetadata(target.name)
    return RegionEnv(target.name, policy, metadata, make_backend, make_source, check_source)


def _env(target: Target, options: RolloutOptions) -> RegionEnv:
    return env_for(target, options.model, options.backend, options.prometheus, options.namespace, options.kubeconfig)


def run_rollout(
    options: RolloutOptions,
    *,
    console: Console | None = None,
    clock: Clock | None = None,
    observer: Observer | None = None,
    envs: list[RegionEnv] | None = None,
) -> RolloutResult:
    """Run a rollout to its end and return its report (written to options.report, with its PNG, when set).
    RolloutError when it is refused before any traffic moved (unknown version, incompatible candidate, a rollout
    already running, unreachable gateways). `envs` replaces the regions built from the options (tests)."""
    console = console or Console(highlight=False)
    if envs is None:
        chosen = targets(options.topology, options.region, options.all_regions, options.admin, options.grpc)
        envs = [_env(t, options) for t in chosen]
    clock = clock or SystemClock()
    config = options.config
    report = RolloutReport(
        model=options.model,
        candidate=options.candidate,
        command=options.command,
        config={
            **config.to_dict(),
            "backend": options.backend,
            "source": f"prometheus {options.prometheus}" if options.prometheus else "embedded (gateways' /metrics)",
            "regions": [e.name for e in envs],
        },
        started_at=clock.wall(),
    )
    recorder = Recorder(report)
    names = [e.name for e in envs]
    view = LiveView(console, names, list(config.phases), f"rollout of {options.model} to version {options.candidate}")
    observers = Observers(recorder, view, *(() if observer is None else (observer,)))
    rollout = Rollout(
        options.model, options.candidate, envs, config, baseline=options.baseline, clock=clock, observer=observers
    )
    prepared = rollout.prepare()
    report.config["baselines"] = {p.env.name: p.baseline for p in prepared}
    started = clock.monotonic()
    with view:
        rollout.run(prepared)
    report.duration_s = clock.monotonic() - started
    png = write(report, options.report) if options.report is not None else None
    return RolloutResult(0 if report.promoted else 1, report, png)


def region_envs(options: RolloutOptions) -> list[RegionEnv]:
    """The regions of status, abort and promote: --region, else every region of the topology."""
    chosen = targets(options.topology, options.region, options.region is None, options.admin, options.grpc)
    return [_env(t, options) for t in chosen]


def run_status(options: RolloutOptions, console: Console, envs: list[RegionEnv] | None = None) -> list[RegionStatus]:
    found = status(envs if envs is not None else region_envs(options))
    clock = SystemClock()
    for item in found:
        console.print(item.line(clock.wall()), soft_wrap=True, markup=False)
    return found


def run_action(
    action: str, options: RolloutOptions, console: Console, envs: list[RegionEnv] | None = None
) -> list[RegionOutcome]:
    act = abort if action == "abort" else promote
    outcomes = act(envs if envs is not None else region_envs(options), options.model, options.config)
    for o in outcomes:
        text = f"{o.region}: {o.state.replace('_', ' ')}"
        if o.reason:
            text += f": {o.reason}"
        console.print(text, soft_wrap=True, markup=False)
    return outcomes


def stderr_console() -> Console:
    return Console(file=sys.stderr, highlight=False)


def run_pin(options: RolloutOptions, console: Console) -> list[tuple[str, bool]]:
    """Every unversioned request of the model to `options.candidate`, in every region (or --region), with no
    lease: what an operator sets before adding a new version, so that it takes no traffic until a rollout moves
    it. Refused in a region where a rollout is running. Returns (region, pinned) per region."""
    from edgeinfer.rollout.backends import BackendError, Conflict
    from edgeinfer.rollout.record import lock_of

    chosen = targets(options.topology, options.region, options.region is None, options.admin, options.grpc)
    done = []
    for target in chosen:
        policy = GatewayPolicy(AdminClient(target.admin), options.model)
        try:
            current = policy.get()
            lock = lock_of(current, SystemClock().wall())
            if lock.record is not None:
                console.print(f"{target.name}: refused: {lock.why}; abort it first", markup=False, soft_wrap=True)
                done.append((target.name, False))
                continue
            policy.put({"weights": {options.candidate: 100}}, int(current.get("generation", 0)))
        except (BackendError, Conflict) as exc:
            console.print(f"{target.name}: not pinned: {exc}", markup=False, soft_wrap=True)
            done.append((target.name, False))
            continue
        console.print(
            f"{target.name}: every unversioned request of {options.model} goes to version {options.candidate}",
            markup=False,
            soft_wrap=True,
        )
        done.append((target.name, True))
    return done
