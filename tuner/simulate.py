"""Discrete-event simulator: a trace through regions of scale-to-zero pools under the KPA rule, with cold starts.

Per (region, model) pool: the gateway cache answers a share of requests (the model's hit ratio); the misses go
to instances, each one server that runs batches. The real KPA of gateway/autoscaler.py decides every tick
(2 s) from the time-weighted concurrency; a request that finds no instance wakes one (Knative's activator).
Instances are picked earliest-free first, so a request rides the first slot that frees: a warm one or one that
finishes its cold start. A request served by an instance that became ready after it arrived waited on a cold
start (the local pool's own rule).

Batching is modelled as a work-conserving server that runs at its batched rate whenever it has a backlog: a
request that queues costs batch_seconds(max_batch)/max_batch of the instance's time, and its latency includes
the whole batch's compute.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.functions.config import Autoscaling
from edgeinfer.gateway.autoscaler import KPA
from edgeinfer.tuner.profiles import ModelProfile
from edgeinfer.tuner.traces import Pool, Trace

Schedule = list[tuple[float, Autoscaling]]  # knob changes (time, knobs), sorted


@dataclass(frozen=True, slots=True)
class SimSettings:
    network_s: float = 0.020
    gateway_s: float = 0.003  # measured: warm end-to-end p50 3.3 ms with a 0.3 ms model
    hit_s: float = 0.001  # a cache hit's extra time (Redis read)
    tick_s: float = 2.0
    max_instances: int = 64
    seed: int = 1


@dataclass
class PoolRun:
    pool: Pool
    arrivals: np.ndarray  # misses, sorted
    latency: np.ndarray  # seconds spent in the pool per miss
    cold: np.ndarray  # bool per miss: waited on a cold start
    intervals: list[tuple[float, float]] = field(default_factory=list)  # instance (spawned, gone)
    spawns: int = 0


def base_knobs(profile: ModelProfile) -> Autoscaling:
    """Knative's defaults, with `target` one full batch per instance (how GPU services are configured)."""
    return Autoscaling.model_validate({"target": profile.kpa_target, "initial-scale": 0})


def simulate_pool(
    pool: Pool, arrivals: np.ndarray, profile: ModelProfile, schedule: Schedule, duration: float,
    settings: SimSettings, seed: int,
) -> PoolRun:  # fmt: skip
    rng = np.random.default_rng(seed)
    n = len(arrivals)
    sigma = math.sqrt(math.log1p(profile.service_cv2))
    noise = np.exp(sigma * rng.standard_normal(n) - sigma * sigma / 2).tolist()
    colds = profile.cold_start.sample(rng, 4096).tolist()
    cold_i = 0
    s1 = profile.batch1_s
    batch_s = profile.batch_seconds(profile.max_batch)
    per_batched = batch_s / profile.max_batch
    extra_batched = batch_s - per_batched
    tick = settings.tick_s
    knobs = schedule[0][1]
    sched_i = 1
    kpa = KPA(knobs, settings.max_instances, started=None)
    heap: list[tuple[float, int]] = []  # (free at, instance id); one live entry per instance
    spawned: dict[int, float] = {}
    ready_at: dict[int, float] = {}
    dead: set[int] = set()
    run = PoolRun(pool, arrivals, np.zeros(n), np.zeros(n, dtype=bool))
    ids = 0

    def spawn(t: float, warm: bool = False) -> None:
        nonlocal ids, cold_i
        ids += 1
        ready = t if warm else t + colds[cold_i % len(colds)]
        cold_i += 0 if warm else 1
        run.spawns += 0 if warm else 1
        spawned[ids] = t
        ready_at[ids] = ready
        heapq.heappush(heap, (ready, ids))

    # Start as the policy would have left the previous day: min-scale, or what the first minute keeps busy.
    first = float(np.searchsorted(arrivals, 60.0)) / 60.0
    start = max(knobs.min_scale, math.ceil(first * s1 / knobs.effective_target) if first > 0 else 0)
    for _ in range(min(start, settings.max_instances)):
        spawn(0.0, warm=True)
    if start:
        kpa.record(0.0, first * s1)

    area = 0.0
    next_tick = tick
    latency = run.latency
    cold_index: list[int] = []
    window_ticks = int(knobs.window / tick) + 1

    def do_ticks(until: float) -> None:
        nonlocal next_tick, area, knobs, sched_i, window_ticks
        while next_tick <= until:
            t = next_tick
            while sched_i < len(schedule) and schedule[sched_i][0] <= t:
                knobs = schedule[sched_i][1]
                kpa.knobs = knobs
                window_ticks = int(knobs.window / tick) + 1
                sched_i += 1
            if not spawned and knobs.min_scale == 0 and area == 0.0:
                # Nothing runs and nothing will until the next arrival or knob change: skip, leaving a
                # window's worth of zero samples so the averages are as if every tick had run.
                target = min(until, schedule[sched_i][0] if sched_i < len(schedule) else math.inf)
                skip = int((target - t) / tick) - window_ticks
                if skip > 0:
                    next_tick += skip * tick
                    continue
            kpa.record(t, area / tick)
            area = 0.0
            ready = sum(1 for r in ready_at.values() if r <= t)
            current = len(spawned)
            desired = kpa.decide(t, ready, current - ready).desired
            for _ in range(max(0, desired - current)):
                spawn(t)
            if desired < current:
                idle = [i for f, i in heap if f <= t and i not in dead and ready_at[i] <= t]
                for i in idle[: current - desired]:
                    dead.add(i)
                    run.intervals.append((spawned.pop(i), t))
                    del ready_at[i]
            next_tick += tick

    for k in range(n):
        a = arrivals[k]
        if a >= next_tick:
            do_ticks(a)
        if not spawned:  # the activator wakes the model
            for _ in range(max(1, knobs.activation_scale)):
                spawn(a)
        f, i = heap[0]
        while i in dead:
            heapq.heappop(heap)
            dead.discard(i)
            f, i = heap[0]
        if f <= a:
            finish = a + s1 * noise[k]
            took = finish - a
        else:
            finish = f + per_batched * noise[k]
            took = finish - a + extra_batched
        heapq.heapreplace(heap, (finish, i))
        if ready_at[i] > a:
            cold_index.append(k)
        latency[k] = took
        area += took + 1e-9
    do_ticks(duration)
    for t0 in spawned.values():
        run.intervals.append((t0, duration))
    run.cold[cold_index] = True
    return run


# -- a whole trace -------------------------------------------------------------------------------------


@dataclass
class PolicyContext:
    trace: Trace
    profiles: dict[str, ModelProfile]
    misses: dict[Pool, np.ndarray]
    settings: SimSettings
    extra: dict[str, Any] = field(default_factory=dict)


SchedulePlanner = Callable[[Pool, PolicyContext], Schedule]


@dataclass
class RegionHour:
    region: str
    hour: int
    requests: int
    cold_waits: int
    p99_ms: float
    p999_ms: float
    instance_hours: float


@dataclass
class SimResult:
    policy: str
    hours: list[RegionHour]
    spawns: int
    # per "region/model": requests (misses), cold waits, instance-hours
    pools: dict[str, dict[str, float]] = field(default_factory=dict)
    raw_p99: dict[str, float] = field(default_factory=dict)  # seconds, per region over the run ("*": all)

    @property
    def requests(self) -> int:
        return sum(h.requests for h in self.hours)

    @property
    def cold_waits(self) -> int:
        return sum(h.cold_waits for h in self.hours)

    @property
    def instance_hours(self) -> float:
        return sum(h.instance_hours for h in self.hours)

    @property
    def worst_p99_ms(self) -> float:
        return max((h.p99_ms for h in self.hours if h.requests), default=0.0)

    def hours_over(self, slo_ms: float) -> int:
        return sum(1 for h in self.hours if h.requests and h.p99_ms >= slo_ms)

    def summary(self, slo_ms: float) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "requests": self.requests,
            "cold_waits": self.cold_waits,
            "cold_starts": self.spawns,
            "instance_hours": round(self.instance_hours, 2),
            "worst_region_hour_p99_ms": round(self.worst_p99_ms, 2),
            "region_hours_over_slo": self.hours_over(slo_ms),
            "region_hours": len(self.hours),
        }


def split_hits(trace: Trace, seed: int) -> tuple[dict[Pool, np.ndarray], dict[Pool, np.ndarray]]:
    """Arrivals of each pool, split into cache hits and misses (the model's hit ratio, seeded)."""
    rng = np.random.default_rng(seed)
    hits: dict[Pool, np.ndarray] = {}
    misses: dict[Pool, np.ndarray] = {}
    for pool in trace.pools():
        arrivals = trace.arrivals(pool, rng)
        info = trace.models.get(pool[1])
        ratio = info.hit_ratio if info is not None else 0.0
        hit = rng.random(len(arrivals)) < ratio
        hits[pool], misses[pool] = arrivals[hit], arrivals[~hit]
    return hits, misses


def simulate(
    trace: Trace, policy: str, planner: SchedulePlanner, profiles: dict[str, ModelProfile], settings: SimSettings,
    split: tuple[dict[Pool, np.ndarray], dict[Pool, np.ndarray]] | None = None, extra: dict[str, Any] | None = None,
) -> SimResult:  # fmt: skip
    hits, misses = split or split_hits(trace, settings.seed)
    context = PolicyContext(trace, profiles, misses, settings, extra or {})
    hour_s = trace.day_s / 24.0
    n_hours = max(1, math.ceil(trace.duration_s / hour_s - 1e-9))
    regions = sorted({r for r, _ in trace.pools()})
    latencies: dict[str, list[np.ndarray]] = {r: [] for r in regions}
    times: dict[str, list[np.ndarray]] = {r: [] for r in regions}
    cold: dict[str, np.ndarray] = {r: np.zeros(n_hours, dtype=np.int64) for r in regions}
    inst: dict[str, np.ndarray] = {r: np.zeros(n_hours) for r in regions}
    spawns = 0
    pool_stats: dict[str, dict[str, float]] = {}
    for number, pool in enumerate(trace.pools()):
        region, model = pool
        profile = profiles[model]
        schedule = planner(pool, context)
        run = simulate_pool(pool, misses[pool], profile, schedule, trace.duration_s, settings,
                            settings.seed * 1000 + number)  # fmt: skip
        spawns += run.spawns
        pool_hours = _instance_hours(run.intervals, hour_s, n_hours)
        pool_stats[f"{region}/{model}"] = {
            "misses": float(len(run.arrivals)),
            "cold_waits": float(run.cold.sum()),
            "instance_hours": float(pool_hours.sum()) / 3600 * (86400.0 / trace.day_s),
        }
        overhead = settings.network_s + settings.gateway_s
        latencies[region] += [run.latency + overhead, np.full(len(hits[pool]), overhead + settings.hit_s)]
        times[region] += [run.arrivals, hits[pool]]
        cold[region] += np.bincount(_hour_index(run.arrivals[run.cold], hour_s, n_hours), minlength=n_hours)
        inst[region] += pool_hours
    result = SimResult(policy, [], spawns, pool_stats)
    every: list[np.ndarray] = []
    for region in regions:
        lat = np.concatenate(latencies[region]) if latencies[region] else np.empty(0)
        if len(lat):
            result.raw_p99[region] = float(np.quantile(lat, 0.99))
            every.append(lat)
        hour = _hour_index(np.concatenate(times[region]) if times[region] else np.empty(0), hour_s, n_hours)
        order = np.argsort(hour, kind="stable")
        lat, hour = lat[order], hour[order]
        bounds = np.searchsorted(hour, np.arange(n_hours + 1))
        for h in range(n_hours):
            chunk = lat[bounds[h] : bounds[h + 1]]
            p99, p999 = (np.quantile(chunk, [0.99, 0.999]) * 1000).tolist() if len(chunk) else (0.0, 0.0)
            result.hours.append(
                RegionHour(region, h, len(chunk), int(cold[region][h]), p99, p999, float(inst[region][h]) / 3600
                           * (86400.0 / trace.day_s))
            )  # fmt: skip
    if every:
        result.raw_p99["*"] = float(np.quantile(np.concatenate(every), 0.99))
    return result


def _hour_index(t: np.ndarray, hour_s: float, n_hours: int) -> np.ndarray:
    return np.minimum((np.asarray(t) / hour_s).astype(np.int64), n_hours - 1)


def _instance_hours(intervals: Sequence[tuple[float, float]], hour_s: float, n_hours: int) -> np.ndarray:
    """Instance-seconds per hour bucket (in trace seconds)."""
    if not intervals:
        return np.zeros(n_hours)
    spans = np.asarray(intervals)
    edges = np.arange(n_hours + 1) * hour_s
    low = np.maximum(spans[:, :1], edges[None, :-1])
    high = np.minimum(spans[:, 1:], edges[None, 1:])
    return np.asarray(np.clip(high - low, 0, None).sum(axis=0))
