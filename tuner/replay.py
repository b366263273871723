"""The live check: replay a trace through a running stack (`edgeinfer up`), with the tuner on or off, and compare
the measured p99 and cold-start waits with the simulator's prediction for the same arrivals.

Arrivals are the simulator's (same seed): each request is sent open-loop at its time to its region's gateway,
with a unique payload (a cache miss), and timed from its intended send time. With the tuner on, the plan the
simulator's tuner makes (slot by slot, from --history and what was sent before each slot) is applied through
PATCH /v1/pools/<model> at each slot's start; both runs first set the simulator's base knobs on every pool.

The report is per region as well as overall: an aggregate p99 under the SLO can hide a region over it, so each
region's p99 is compared with --slo-ms, and every region over it is listed under `slo_misses` and printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from edgeinfer.tuner.live import LiveError, LocalPoolApplier, parse_metrics, read_metrics


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--trace", type=Path, required=True, help="trace to replay (models of the stack)")
    parser.add_argument("--topology", type=Path, help="topology of the running stack (default: edgeinfer up's)")
    parser.add_argument("--tuner", choices=("on", "off"), required=True)
    parser.add_argument("--history", type=Path, help="with --tuner on: the history the tuner learns from")
    parser.add_argument("--seed", type=int, default=1, help="arrival seed, shared with the simulator")
    parser.add_argument("--json", type=Path, help="write measured and predicted figures here")
    parser.add_argument("--max-instances", type=int, default=4, help="the gateways' --max-instances (default 4)")
    parser.add_argument("--gateway-ms", type=float, default=3.0, help="simulated gateway time per request")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="per-request deadline")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 SLO each region is checked against")


async def _send_all(plan: list[tuple[float, int]], targets: list[tuple[str, bytes, int]],
                    changes: list[tuple[float, Any]], timeout: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Open-loop: request k goes at plan[k][0] to pool plan[k][1]; returns latency (s, nan = failed) and codes."""
    channels = {address: grpc.aio.insecure_channel(address) for address, _, _ in targets}
    method = "/inference.GRPCInferenceService/ModelInfer"
    calls = [channels[address].unary_unary(method, None, None) for address, _, _ in targets]
    for channel in channels.values():
        await asyncio.wait_for(channel.channel_ready(), 10)
    latency = np.full(len(plan), np.nan)
    failed = np.zeros(len(plan), dtype=bool)
    counters = [0] * len(targets)
    start = time.monotonic() + 0.5
    tasks: set[asyncio.Task[None]] = set()

    async def one(k: int, pool: int, intended: float) -> None:
        _, payload, offset = targets[pool]
        counters[pool] += 1
        data = bytearray(payload)
        struct.pack_into("<Q", data, offset, (pool << 40) | counters[pool])
        try:
            await calls[pool](bytes(data), timeout=timeout)
            latency[k] = time.monotonic() - intended
        except grpc.aio.AioRpcError:
            failed[k] = True

    async def apply_changes() -> None:
        for at, change in changes:
            delay = start + at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await asyncio.to_thread(change)

    applier = asyncio.create_task(apply_changes())
    for k, (t, pool) in enumerate(plan):
        delay = start + t - time.monotonic()
        if delay > 0.001:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(k, pool, start + t))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    applier.cancel()
    for channel in channels.values():
        await channel.close(None)
    return latency, failed


def _p99_ms(latency_s: np.ndarray) -> float | None:
    return round(float(np.quantile(latency_s, 0.99)) * 1000, 2) if len(latency_s) else None


def measured_by_region(latency: np.ndarray, failed: np.ndarray, region_of: np.ndarray,
                       slo_ms: float) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per region: requests, failed, measured p99, the share of requests over the SLO (a failed request counts
    as over), and whether the region's p99 missed the SLO. latency in s (nan = failed), one entry per request."""
    out: dict[str, dict[str, Any]] = {}
    for region in sorted(set(region_of.tolist())):
        mask = region_of == region
        ok = latency[mask][~np.isnan(latency[mask])]
        p99 = _p99_ms(ok)
        over = int((ok * 1000 > slo_ms).sum()) + int(failed[mask].sum())
        out[str(region)] = {
            "requests": int(mask.sum()),
            "failed": int(failed[mask].sum()),
            "measured_p99_ms": p99,
            "share_over_slo": round(over / max(int(mask.sum()), 1), 5),
            "p99_over_slo": p99 is None or p99 > slo_ms,
        }
    return out


def slo_misses(result: dict[str, Any], slo_ms: float) -> list[str]:
    """One line per region whose measured p99 is over the SLO (and for the whole run, if it is)."""
    lines = [
        f"{region}: p99 {r['measured_p99_ms']} ms > SLO {slo_ms:g} ms "
        f"({r['share_over_slo'] * 100:.2f}% of its requests over {slo_ms:g} ms)"
        for region, r in sorted(result["regions"].items())
        if r["p99_over_slo"]
    ]
    overall = result.get("measured_p99_ms")
    if overall is None or overall > slo_ms:
        lines.append(f"all regions: p99 {overall} ms > SLO {slo_ms:g} ms")
    return lines


def _payload(address: str, model: str) -> tuple[bytes, int]:
    from edgeinfer.loadgen.payload import build_payload, unique_offset
    from edgeinfer.protocol import open_inference_pb2 as pb
    from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
    from edgeinfer.protocol.tensors import TensorSpec

    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        meta = stub.ModelMetadata(pb.ModelMetadataRequest(name=model), timeout=10)
    specs = [TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in meta.inputs]
    payload = build_payload(model, specs, batch_size=1)
    return payload, unique_offset(payload)


def run_replay(args: argparse.Namespace) -> int:
    from edgeinfer.regions.topology import default_topology, load_topology
    from edgeinfer.tuner.cli_simulate import model_profiles
    from edgeinfer.tuner.planner import TunerSettings
    from edgeinfer.tuner.policies import PLANNERS, demand_models, tuner_plan
    from edgeinfer.tuner.simulate import PolicyContext, SimSettings, base_knobs, simulate, split_hits
    from edgeinfer.tuner.traces import read_trace

    trace = read_trace(args.trace)
    topology = load_topology(args.topology) if args.topology else default_topology()
    regions = {r.name: r for r in topology.regions}
    missing = sorted({r for r, _ in trace.pools()} - set(regions))
    if missing:
        print(f"edgeinfer trace replay: the trace has regions {missing} the topology lacks", file=sys.stderr)
        return 2
    if args.tuner == "on" and args.history is None:
        print("edgeinfer trace replay: --tuner on needs --history FILE", file=sys.stderr)
        return 2
    profiles = model_profiles(trace, [])
    settings = TunerSettings()
    sim = SimSettings(network_s=0.0, gateway_s=args.gateway_ms / 1000, max_instances=args.max_instances,
                      seed=args.seed)  # fmt: skip
    split = split_hits(trace, args.seed)
    extra: dict[str, Any] = {"tuner_settings": settings}
    if args.history is not None:
        extra["demand_models"] = demand_models(read_trace(args.history), profiles, settings)  # type: ignore[arg-type]
    pools = trace.pools()
    admin = {name: str(r.gateway.admin) for name, r in regions.items()}
    applier = LocalPoolApplier(admin)
    changes: list[tuple[float, Any]] = []
    if args.tuner == "on":
        plan = tuner_plan(PolicyContext(trace, profiles, split[1], sim, extra))
        for (region, model), decisions in plan.items():
            for d in decisions:
                change = {"min-scale": d.min_scale}
                changes.append((d.start_s, lambda r=region, m=model, c=change: applier.apply(r, m, c)))
        changes.sort(key=lambda c: c[0])
    try:
        for region, model in pools:
            knobs = base_knobs(profiles[model]).model_dump(by_alias=True)
            applier.apply(region, model, {k: knobs[k] for k in ("target", "min-scale", "scale-down-delay",
                                                                  "scale-to-zero-pod-retention-period")})  # fmt: skip
        before = {r: parse_metrics(read_metrics(admin[r])) for r in {p[0] for p in pools}}
        targets = []
        for region, model in pools:
            address = regions[region].gateway.grpc_address
            targets.append((address, *_payload(address, model)))
    except LiveError as exc:
        print(f"edgeinfer trace replay: {exc}", file=sys.stderr)
        return 1
    schedule = sorted((float(t), i) for i, pool in enumerate(pools) for t in split[1][pool])
    print(f"replaying {len(schedule):,} requests over {trace.duration_s:.0f}s, tuner {args.tuner}", flush=True)
    latency, failed = asyncio.run(_send_all(schedule, targets, changes, args.timeout_s))
    after = {r: parse_metrics(read_metrics(admin[r])) for r in before}
    region_of = np.array([pools[i][0] for _, i in schedule])
    result: dict[str, Any] = {"tuner": args.tuner, "trace": str(args.trace), "requests": len(schedule),
                              "failed": int(failed.sum()), "slo_ms": args.slo_ms, "regions": {}}  # fmt: skip
    predicted = simulate(trace, "tuner" if args.tuner == "on" else "knative",
                         PLANNERS["tuner" if args.tuner == "on" else "knative"], profiles, sim, split=split,
                         extra=extra)  # fmt: skip
    measured = measured_by_region(latency, failed, region_of, args.slo_ms)
    for region in sorted(before):
        waits = sum(after[region].get(m, _zero()).cold_waits - before[region].get(m, _zero()).cold_waits
                    for r, m in pools if r == region)  # fmt: skip
        hours = [h for h in predicted.hours if h.region == region]
        sim_lat = _region_latency(predicted, region)
        result["regions"][region] = {
            **measured[region],
            "predicted_p99_ms": round(sim_lat * 1000, 2),
            "measured_cold_waits": int(waits),
            "predicted_cold_waits": sum(h.cold_waits for h in hours),
        }
    result["measured_p99_ms"] = _p99_ms(latency[~np.isnan(latency)])
    result["predicted_p99_ms"] = round(_region_latency(predicted, None) * 1000, 2)
    misses = slo_misses(result, args.slo_ms)
    result["slo_misses"] = misses
    result["command"] = "edgeinfer trace replay " + " ".join(sys.argv[3:])
    print(json.dumps(result, indent=1))
    for region, r in sorted(result["regions"].items()):
        print(f"{region}: p99 {r['measured_p99_ms']} ms (predicted {r['predicted_p99_ms']} ms), "
              f"{r['share_over_slo'] * 100:.2f}% over {args.slo_ms:g} ms, cold-start waits "
              f"{r['measured_cold_waits']} (predicted {r['predicted_cold_waits']})")  # fmt: skip
    print("SLO misses: " + ("; ".join(misses) if misses else f"none (every region's p99 ≤ {args.slo_ms:g} ms)"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _zero() -> Any:
    from edgeinfer.tuner.live import ModelReadings

    return ModelReadings()


def _region_latency(result: Any, region: str | None) -> float:
    """p99 over the whole run from the simulator's per-region-hour figures (weighted by requests)."""
    hours = [h for h in result.hours if region is None or h.region == region]
    total = sum(h.requests for h in hours)
    # The run's p99 is close to the request-weighted mean of the hours' p99 when the hours are alike; the
    # exact figure comes from the raw latencies, kept by the simulator for this purpose.
    raw = result.raw_p99.get(region or "*") if hasattr(result, "raw_p99") else None
    if raw is not None:
        return float(raw)
    return float(sum(h.p99_ms * h.requests for h in hours) / max(total, 1) / 1000)
