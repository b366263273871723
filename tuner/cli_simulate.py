"""`edgeinfer simulate --trace FILE --policy P|all`: replay a trace through the discrete-event model of the
regions and compare warm-pool policies: cold-start waits, p99/p99.9 per region-hour, warm instance-hours."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from edgeinfer.tuner.planner import TunerSettings
from edgeinfer.tuner.policies import PLANNERS, POLICIES, demand_models
from edgeinfer.tuner.profiles import ALL_PROFILES, ModelProfile, gpu_cold_start, profile_named
from edgeinfer.tuner.simulate import SimResult, SimSettings, simulate, split_hits
from edgeinfer.tuner.traces import Trace, TraceError, read_trace


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, required=True, help="trace file (edgeinfer trace generate/import)")
    parser.add_argument("--policy", default="all", help=f"one of {', '.join(POLICIES)}, a comma list, or all")
    parser.add_argument("--history", type=Path, help="trace of the time before (the tuner learns its profile here)")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 end-to-end SLO (default 100)")
    parser.add_argument("--gateway-ms", type=float, default=5.0, help="the gateway's share of the SLO (default 5)")
    parser.add_argument("--network-ms", type=float, default=20.0, help="network share of the SLO (default 20)")
    parser.add_argument("--sim-network-ms", type=float, default=None,
                        help="network time the simulator adds to each request (default: --network-ms)")  # fmt: skip
    parser.add_argument("--sim-gateway-ms", type=float, default=3.0, help="gateway time per request (default 3)")
    parser.add_argument("--max-instances", type=int, default=64, help="instances per pool at most (default 64)")
    parser.add_argument(
        "--profile", action="append", default=[], metavar="MODEL=PROFILE",
        help=f"service/cold-start profile of a model (known: {', '.join(sorted(ALL_PROFILES))})",
    )  # fmt: skip
    parser.add_argument(
        "--engine-cached", type=float, default=None,
        help="GPU profiles: share of cold starts that find a cached TensorRT engine (default 0.5)",
    )  # fmt: skip
    parser.add_argument("--burst-target", type=float, default=0.0005,
                        help="tuner: share of requests that may outrun warm capacity during a reaction time")
    parser.add_argument("--cold-price", type=float, default=TunerSettings().cold_price,
                        help="tuner: cold-start waits an hour that one more warm instance must save (default 2)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the comparison, per region-hour, as JSON")
    parser.add_argument("--plot", type=Path, help="write a PNG of p99 per region-hour and the totals")


def model_profiles(trace: Trace, overrides: list[str], engine_cached: float | None = None) -> dict[str, ModelProfile]:
    chosen = {name: info.profile for name, info in trace.models.items()}
    for text in overrides:
        model, sep, profile = text.partition("=")
        if not sep:
            raise ValueError(f"--profile {text!r}: expected MODEL=PROFILE, e.g. ranker=ranker")
        chosen[model] = profile
    for _, model in trace.pools():
        chosen.setdefault(model, model if model in ALL_PROFILES else "ranker")
    profiles = {model: profile_named(name) for model, name in chosen.items()}
    if engine_cached is not None:
        from dataclasses import replace

        profiles = {
            m: replace(p, cold_start=gpu_cold_start(engine_cached)) if p.cold_start.slow is not None else p
            for m, p in profiles.items()
        }
    return profiles


def run_policies(trace: Trace, history: Trace | None, policies: list[str], profiles: dict[str, ModelProfile],
                 tuner_settings: TunerSettings, sim_settings: SimSettings) -> list[SimResult]:  # fmt: skip
    split = split_hits(trace, sim_settings.seed)
    extra: dict[str, Any] = {"tuner_settings": tuner_settings}
    if "tuner" in policies:
        if history is None:
            raise ValueError(
                "the tuner policy needs --history FILE: a trace of the days before, e.g. `edgeinfer trace generate "
                "--hours 168 --seed 2 --resolution-s 10 --start-hour-of-week 0 --out history.csv.gz`"
            )
        extra["demand_models"] = demand_models(history, profiles, tuner_settings)  # type: ignore[arg-type]
    return [simulate(trace, p, PLANNERS[p], profiles, sim_settings, split=split, extra=extra) for p in policies]


def report(results: list[SimResult], slo_ms: float) -> dict[str, Any]:
    by_name = {r.policy: r for r in results}
    out: dict[str, Any] = {"policies": [r.summary(slo_ms) for r in results]}
    tuner, peak, knative, hybrid = (by_name.get(k) for k in ("tuner", "fixed-peak", "knative", "hybrid"))
    checks: dict[str, Any] = {}
    if tuner is not None:
        checks["tuner_p99_under_slo_every_region_hour"] = tuner.hours_over(slo_ms) == 0
        if peak is not None and peak.instance_hours > 0:
            checks["tuner_instance_hours_over_fixed_peak"] = round(tuner.instance_hours / peak.instance_hours, 3)
        if knative is not None:
            checks["knative_cold_waits_over_tuner"] = round(knative.cold_waits / max(tuner.cold_waits, 1), 2)
        if hybrid is not None:
            checks["tuner_vs_hybrid"] = {
                "cold_waits": [tuner.cold_waits, hybrid.cold_waits],
                "instance_hours": [round(tuner.instance_hours, 2), round(hybrid.instance_hours, 2)],
            }
    out["checks"] = checks
    out["region_hours"] = {
        r.policy: [
            {"region": h.region, "hour": h.hour, "requests": h.requests, "cold_waits": h.cold_waits,
             "p99_ms": round(h.p99_ms, 2), "p999_ms": round(h.p999_ms, 2), "instance_hours": round(h.instance_hours, 3)}
            for h in r.hours
        ]
        for r in results
    }  # fmt: skip
    out["pools"] = {r.policy: r.pools for r in results}
    return out


def plot(results: list[SimResult], slo_ms: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    for result in results:
        p99 = [h.p99_ms for h in result.hours]
        axes[0].plot(range(len(p99)), p99, label=result.policy, lw=1)
    axes[0].axhline(slo_ms, color="k", ls="--", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("region-hour (regions one after another)")
    axes[0].set_ylabel("p99 end to end, ms")
    axes[0].legend(fontsize=8)
    names = [r.policy for r in results]
    axes[1].bar(names, [r.cold_waits for r in results], color="tab:red")
    axes[1].set_yscale("log")
    axes[1].set_title("requests that waited on a cold start")
    axes[2].bar(names, [r.instance_hours for r in results], color="tab:blue")
    axes[2].set_title("warm instance-hours")
    for ax in axes[1:]:
        ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> int:
    try:
        policies = list(POLICIES) if args.policy == "all" else [p.strip() for p in args.policy.split(",")]
        unknown = [p for p in policies if p not in PLANNERS]
        if unknown:
            raise ValueError(f"--policy {', '.join(unknown)}: unknown; choose from {', '.join(POLICIES)} or all")
        trace = read_trace(args.trace)
        history = read_trace(args.history) if args.history else None
        profiles = model_profiles(trace, args.profile, args.engine_cached)
        tuner_settings = TunerSettings(slo_ms=args.slo_ms, gateway_ms=args.gateway_ms, network_ms=args.network_ms,
                                       max_instances=args.max_instances, burst_target=args.burst_target,
                                       cold_price=args.cold_price)  # fmt: skip
        network = args.network_ms if args.sim_network_ms is None else args.sim_network_ms
        sim_settings = SimSettings(network_s=network / 1000, gateway_s=args.sim_gateway_ms / 1000,
                                   max_instances=args.max_instances, seed=args.seed)  # fmt: skip
        results = run_policies(trace, history, policies, profiles, tuner_settings, sim_settings)
    except (TraceError, ValueError) as exc:
        print(f"edgeinfer simulate: {exc}", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.trace}: {len(trace.pools())} pools, SLO p99 {args.slo_ms:g} ms", title_justify="left")
    for column in ("policy", "requests", "cold waits", "cold starts", "instance-hours", "worst p99 ms",
                   "region-hours ≥ SLO"):  # fmt: skip
        table.add_column(column, justify="right" if column != "policy" else "left")
    for r in results:
        table.add_row(r.policy, f"{r.requests:,}", f"{r.cold_waits:,}", f"{r.spawns:,}", f"{r.instance_hours:.1f}",
                      f"{r.worst_p99_ms:.1f}", f"{r.hours_over(args.slo_ms)}/{len(r.hours)}")  # fmt: skip
    Console().print(table)
    out = report(results, args.slo_ms)
    for key, value in out["checks"].items():
        print(f"{key}: {value}")
    if args.json:
        out["command"] = "edgeinfer simulate " + " ".join(shlex.quote(a) for a in sys.argv[2:])
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    if args.plot:
        plot(results, args.slo_ms, args.plot)
    return 0
