"""The policies the simulator compares, each as a schedule of Knative knobs per pool.

- knative: min-scale 0 and the KPA, Knative's defaults.
- fixed-peak: a fixed min-scale sized (by the same M/G/c model) for the pool's highest 1-minute miss rate of the
  trace itself: the best a fixed count can do, known in hindsight.
- keepalive-10m: the KPA plus a retention period so the last instance stays 10 minutes after the last request.
- hybrid: the hybrid-histogram policy of "Serverless in the Wild" (§4.2) deciding 0 ↔ 1 (the KPA scales above):
  an idle-time histogram per pool (1-minute bins, 4-hour range); after each invocation, unload and pre-warm
  at the 5th percentile of idle times (minus 10%), keep alive until the 99th (plus 10%); while fewer than 10
  idle times are seen or the histogram is not representative (CV of bin counts < 2) keep alive for the whole
  range; when most idle times are beyond the range, predict the next from the recent ones (the paper uses
  ARIMA; we take their mean) and pre-warm 15% before it for 30% of it.
- tuner: the edgeinfer tuner (tuner/planner.py), slot by slot, from a history trace plus the EWMA of what it
  has seen so far.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgeinfer.tuner.forecast import DemandModel
from edgeinfer.tuner.planner import Decision, TunerSettings, apply_region_budget, decide_pool, slot_label
from edgeinfer.tuner.queueing import instances_for
from edgeinfer.tuner.simulate import PolicyContext, Schedule, base_knobs
from edgeinfer.tuner.traces import Pool, Trace

POLICIES = ("knative", "fixed-peak", "keepalive-10m", "hybrid", "tuner")


def knative(pool: Pool, ctx: PolicyContext) -> Schedule:
    return [(0.0, base_knobs(ctx.profiles[pool[1]]))]


def fixed_peak(pool: Pool, ctx: PolicyContext) -> Schedule:
    profile = ctx.profiles[pool[1]]
    settings: TunerSettings = ctx.extra.get("tuner_settings", TunerSettings())
    minute = ctx.trace.day_s / 1440.0
    misses = ctx.misses[pool]
    peak = float(np.bincount((misses / minute).astype(np.int64)).max()) / minute if len(misses) else 0.0
    count = instances_for(profile, peak, settings.budget_s, settings.target).instances if peak > 0 else 0
    return [(0.0, base_knobs(profile).model_copy(update={"min_scale": max(1, count)}))]


def keepalive(pool: Pool, ctx: PolicyContext, minutes: float = 10.0) -> Schedule:
    knobs = base_knobs(ctx.profiles[pool[1]])
    keep = minutes * ctx.trace.day_s / 1440.0
    return [(0.0, knobs.model_copy(update={"scale_to_zero_pod_retention_period": max(0.0, keep - knobs.window)}))]


def hybrid_windows(active_minutes: np.ndarray, range_minutes: int = 240) -> list[tuple[int, int]]:
    """Warm intervals [from, to) in minutes, decided after each active minute from the idle times seen so far."""
    histogram = np.zeros(range_minutes, dtype=np.int64)
    out_of_bounds: list[int] = []
    windows: list[tuple[int, int]] = []
    previous: int | None = None
    for minute in active_minutes.tolist():
        if previous is not None:
            idle = minute - previous - 1
            if idle < range_minutes:
                histogram[idle] += 1
            else:
                out_of_bounds.append(idle)
        previous = minute
        seen = int(histogram.sum()) + len(out_of_bounds)
        if seen >= 10 and len(out_of_bounds) > seen / 2:
            predicted = float(np.mean(out_of_bounds[-3:]))
            prewarm, keep = int(0.85 * predicted), max(1, math.ceil(0.3 * predicted))
        elif seen < 10 or histogram.std() / max(histogram.mean(), 1e-12) < 2.0:
            prewarm, keep = 0, range_minutes
        else:
            cumulative = np.cumsum(histogram) / histogram.sum()
            head = int(np.searchsorted(cumulative, 0.05))
            tail = int(np.searchsorted(cumulative, 0.99)) + 1
            prewarm = int(0.9 * head)
            keep = max(1, math.ceil(1.1 * tail) - prewarm)
        start = minute + 1 + prewarm
        windows.append((start if prewarm else minute, start + keep))
    return windows


def hybrid(pool: Pool, ctx: PolicyContext) -> Schedule:
    knobs = base_knobs(ctx.profiles[pool[1]])
    minute = ctx.trace.day_s / 1440.0
    active = np.unique((ctx.misses[pool] / minute).astype(np.int64))
    merged: list[list[int]] = []
    for start, end in sorted(hybrid_windows(active)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    warm, cold = knobs.model_copy(update={"min_scale": 1}), knobs
    schedule: Schedule = [(0.0, cold)]
    for start, end in merged:
        schedule += [(start * minute, warm), (end * minute, cold)]
    return schedule


# -- the tuner ------------------------------------------------------------------------------------


def demand_models(history: Trace, profiles: dict[str, object], settings: TunerSettings, seed: int = 7,
                  bin_s: float = 10.0) -> dict[Pool, DemandModel]:  # fmt: skip
    """A DemandModel per pool from a history trace's miss counts (its hit ratio thinned out)."""
    rng = np.random.default_rng(seed)
    models: dict[Pool, DemandModel] = {}
    scale = history.day_s / 86400.0
    for pool in history.pools():
        profile = profiles[pool[1]]
        info = history.models.get(pool[1])
        counts = history.binned(pool, bin_s * scale if history.resolution_s == 0 else
                                max(history.resolution_s, round(bin_s * scale / history.resolution_s)
                                    * history.resolution_s))  # fmt: skip
        misses = rng.binomial(counts, 1.0 - (info.hit_ratio if info else 0.0))
        bins = history.duration_s / len(counts)
        models[pool] = DemandModel(
            misses, bins, day_s=history.day_s, start_hour_of_week=history.start_hour_of_week,
            reaction_s=settings.reaction_s(profile),  # type: ignore[arg-type]
            keep_s=60.0 + settings.kpa_tick_s,
        )  # fmt: skip
    return models


def tuner_plan(ctx: PolicyContext) -> dict[Pool, list[Decision]]:
    """Every slot's decisions for every pool, each from what was known at the slot's start."""
    settings: TunerSettings = ctx.extra.get("tuner_settings", TunerSettings())
    models: dict[Pool, DemandModel] = ctx.extra["demand_models"]
    trace = ctx.trace
    hour_s = trace.day_s / 24.0
    slot_s = hour_s / 4
    recent_bin = hour_s / 360.0  # 10 s in a 24-hour day
    n_slots = math.ceil(trace.duration_s / slot_s - 1e-9)
    plan: dict[Pool, list[Decision]] = {pool: [] for pool in trace.pools()}
    binned = {
        pool: np.bincount((m / recent_bin).astype(np.int64), minlength=math.ceil(trace.duration_s / recent_bin) + 1)
        for pool, m in ctx.misses.items()
    }
    lookback = int(4 * hour_s / recent_bin)
    regions = sorted({r for r, _ in trace.pools()})
    for s in range(n_slots):
        start, end = s * slot_s, min(trace.duration_s, (s + 1) * slot_s)
        label = slot_label(start, end, hour_s, trace.start_hour_of_week)
        for region in regions:
            decisions = []
            for pool in (p for p in trace.pools() if p[0] == region):
                model = models.get(pool)
                if model is None:
                    raise ValueError(f"the history trace has no {pool[0]}/{pool[1]}; record or generate one that does")
                model.clock_how = trace.start_hour_of_week
                end_bin = int(start / recent_bin)
                first_bin = max(0, end_bin - lookback)
                recent = (binned[pool][first_bin:end_bin], recent_bin, first_bin * recent_bin) if end_bin else None
                forecast = model.forecast(start, end, recent, halflife_s=hour_s / 2)
                decisions.append(
                    decide_pool(region, pool[1], ctx.profiles[pool[1]], forecast, model.burst_exposure, settings,
                                start, end, label, hour_s)
                )  # fmt: skip
            for decision in apply_region_budget(decisions, settings):
                plan[(decision.region, decision.model)].append(decision)
    return plan


def tuner(pool: Pool, ctx: PolicyContext) -> Schedule:
    if "tuner_plan" not in ctx.extra:
        ctx.extra["tuner_plan"] = tuner_plan(ctx)
    knobs = base_knobs(ctx.profiles[pool[1]])
    schedule: Schedule = []
    last = -1
    for decision in ctx.extra["tuner_plan"][pool]:
        if decision.min_scale != last:
            schedule.append((decision.start_s, knobs.model_copy(update={"min_scale": decision.min_scale})))
            last = decision.min_scale
    return schedule or [(0.0, knobs)]


PLANNERS: dict[str, Callable[[Pool, PolicyContext], Schedule]] = {
    "knative": knative,
    "fixed-peak": fixed_peak,
    "keepalive-10m": keepalive,
    "hybrid": hybrid,
    "tuner": tuner,
}
