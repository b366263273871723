"""`edgeinfer tune --region R|--all-regions`: the warm-pool plan for the running stack, per region and model.

It measures each region's miss-request rate (function calls) over --sample-s from the gateway's /metrics, the
service time (function call seconds) and cold starts (spawn-to-ready histogram), forecasts the next slot (from
--history if given, else the measured rate with a burst allowance), and prints min-scale per model with its
reasons. --apply sets it (the local pool's PATCH /v1/pools/<model>, or with --backend knative a merge patch of
the Services' annotations through the knative package's client); --watch does it again every --interval seconds
until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from edgeinfer.tuner.forecast import DemandModel, SlotForecast
from edgeinfer.tuner.live import (
    KnativeApplier,
    KnobApplier,
    LiveError,
    LocalPoolApplier,
    ModelReadings,
    parse_metrics,
    read_metrics,
)
from edgeinfer.tuner.planner import Decision, TunerSettings, apply_region_budget, decide_pool
from edgeinfer.tuner.profiles import CPU_PROFILES, ColdStart, LogNormal, ModelProfile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--region", action="append", help="a region of the topology (repeatable)")
    where.add_argument("--all-regions", action="store_true", help="every region of the topology")
    parser.add_argument("--topology", type=Path, help="topology file (default: the default topology of edgeinfer up)")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 end-to-end SLO (default 100)")
    parser.add_argument("--gateway-ms", type=float, default=5.0, help="the gateway's share of the SLO (default 5)")
    parser.add_argument("--network-ms", type=float, default=20.0, help="the network's share of the SLO (default 20)")
    parser.add_argument("--history", type=Path, help="a trace of past traffic (its hour-of-week profile forecasts)")
    parser.add_argument("--burst-factor", type=float, default=1.5,
                        help="without --history: the upper rate over the measured one (default 1.5)")  # fmt: skip
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds of metrics per measurement")
    parser.add_argument("--slot-s", type=float, default=900.0, help="length of the planned slot (default 900)")
    parser.add_argument("--apply", action="store_true", help="set the plan through the backend")
    parser.add_argument("--backend", choices=("local", "knative"), default="local")
    parser.add_argument("--namespace", default="default", help="with --backend knative: the Services' namespace")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --backend knative: print each Service's patch, send nothing")  # fmt: skip
    parser.add_argument("--kubeconfig", help="with --backend knative: kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("--watch", action="store_true", help="plan (and apply) again every --interval seconds")
    parser.add_argument("--interval", type=float, default=60.0)


def measured_profile(model: str, before: ModelReadings | None, after: ModelReadings) -> ModelProfile:
    """The model's profile (measured defaults for the examples), with what the gateway measured: service time
    from function-call seconds, cold starts from the spawn-to-ready histogram."""
    profile = CPU_PROFILES.get(model, replace(CPU_PROFILES["ranker"], name=model))
    count = after.call_seconds_count - (before.call_seconds_count if before else 0.0)
    if count >= 20:
        total = after.call_seconds_sum - (before.call_seconds_sum if before else 0.0)
        profile = replace(profile, batch1_s=max(total / count, 1e-5))
    p50, p99 = after.cold_start_quantile(0.5), after.cold_start_quantile(0.99)
    if p50 and p99 and p99 >= p50 > 0:
        profile = replace(profile, cold_start=ColdStart(LogNormal(p50, p99)))
    return profile


def hour_of_week(now: datetime) -> float:
    return now.weekday() * 24 + now.hour + now.minute / 60 + now.second / 3600


def poisson_cold_waits(rate: float, slot_s: float, keep_s: float, cold_s: float) -> float:
    """Requests a slot would see wait on a cold start at min-scale 0, for Poisson arrivals: those after a gap
    longer than the keep time, and those that arrive while it starts."""
    return rate * slot_s * math.exp(-rate * keep_s) * (1 + rate * cold_s)


def plan_region(region: str, rates: dict[str, float], profiles: dict[str, ModelProfile], settings: TunerSettings,
                args: argparse.Namespace, history: dict[tuple[str, str], DemandModel]) -> list[Decision]:  # fmt: skip
    now = datetime.now(UTC)
    label = f"{now:%a %H:%M}+{args.slot_s / 60:.0f}m"
    decisions = []
    for model, rate in sorted(rates.items()):
        profile = profiles[model]
        demand = history.get((region, model))
        exposure = None
        if demand is not None:
            demand.clock_how = hour_of_week(now)
            recent = (__import__("numpy").array([rate * args.sample_s]), args.sample_s, -args.sample_s)
            forecast = demand.forecast(0.0, args.slot_s, recent, halflife_s=args.slot_s)
            exposure = demand.burst_exposure
        else:
            cold = poisson_cold_waits(rate, args.slot_s, 60.0 + settings.kpa_tick_s, profile.cold_start.fast.p50)
            forecast = SlotForecast(rate, rate * args.burst_factor, cold, 1.0)
        decisions.append(decide_pool(region, model, profile, forecast, exposure, settings, 0.0, args.slot_s, label))
    return apply_region_budget(decisions, settings)


def run(args: argparse.Namespace) -> int:
    from edgeinfer.regions.topology import TopologyError, default_topology, load_topology
    from edgeinfer.tuner.policies import demand_models
    from edgeinfer.tuner.traces import TraceError, read_trace

    try:
        topology = load_topology(args.topology) if args.topology else default_topology()
        names = topology.names if args.all_regions else args.region
        unknown = [n for n in names if n not in topology.names]
        if unknown:
            raise ValueError(f"--region {', '.join(unknown)}: not in the topology ({', '.join(topology.names)})")
        settings = TunerSettings(slo_ms=args.slo_ms, gateway_ms=args.gateway_ms, network_ms=args.network_ms)
        admin = {r.name: r.gateway.admin for r in topology.regions if r.name in names}
        missing = [n for n, a in admin.items() if a is None]
        if missing:
            raise ValueError(f"regions {', '.join(missing)} have no gateway.admin address in the topology")
        local = LocalPoolApplier({n: str(a) for n, a in admin.items()})
        applier: KnobApplier = local
        if args.backend == "knative":
            applier = KnativeApplier({r.name: r.kube_context for r in topology.regions}, args.namespace, args.dry_run,
                                     args.kubeconfig)  # fmt: skip
        history: dict[tuple[str, str], DemandModel] = {}
        if args.history:
            past = read_trace(args.history)
            models = {m for _, m in past.pools()}
            profiles0 = {m: CPU_PROFILES.get(m, replace(CPU_PROFILES["ranker"], name=m)) for m in models}
            history = demand_models(past, profiles0, settings)  # type: ignore[arg-type]
    except (TopologyError, TraceError, ValueError) as exc:
        print(f"edgeinfer tune: {exc}", file=sys.stderr)
        return 2
    before: dict[str, tuple[float, dict[str, ModelReadings]]] = {}
    try:
        while True:
            for region in names:
                if region not in before:
                    before[region] = (time.monotonic(), parse_metrics(read_metrics(local.admin[region])))
            time.sleep(args.sample_s if not args.watch or not before else 0)
            for region in names:
                t0, first = before[region]
                pools = local.pools(region)
                now = time.monotonic()
                after = parse_metrics(read_metrics(local.admin[region]))
                before[region] = (now, after)
                rates = {m: max(0.0, after.get(m, ModelReadings()).calls - first.get(m, ModelReadings()).calls)
                         / max(now - t0, 1e-6) for m in pools}  # fmt: skip
                profiles = {m: measured_profile(m, first.get(m), after.get(m, ModelReadings())) for m in pools}
                plan = plan_region(region, rates, profiles, settings, args, history)
                for decision in plan:
                    current = pools.get(decision.model, {}).get("knobs", {}).get("min-scale")
                    change = "" if current == decision.min_scale else f" (now {current})"
                    print(f"{decision.reason}{change}", flush=True)
                    if args.apply and current != decision.min_scale:
                        applier.apply(region, decision.model, {"min-scale": decision.min_scale})
                        if isinstance(applier, KnativeApplier) and applier.dry_run:
                            _, service, patch = applier.patches[-1]
                            print(f"  would patch Service {service} in {region}: {json.dumps(patch)}", flush=True)
                        else:
                            print(f"  applied min-scale {decision.min_scale} to {region}/{decision.model}", flush=True)
            if not args.watch:
                return 0
            time.sleep(args.interval)
    except LiveError as exc:
        print(f"edgeinfer tune: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
