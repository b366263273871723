"""The plan: min-scale per (region, model) and time slot, with its reasons in numbers.

For each pool and slot the planner takes the larger of
- warm path: the fewest instances whose M/G/c tail P(response > budget) stays under `target` at the slot's upper
  rate (forecast × burst allowance), where budget = SLO − gateway share − network share;
- bursts (learned from history, see `burst_instances`): requests that outrun both the warm floor and the
  reactive autoscaler during one reaction time (a KPA tick, then one cold start). A p99 guard keeps their share
  beyond the warm capacity at the SLO under `burst_target`; a price rule adds warm instances while each saves at
  least `cold_price` cold-start waits an hour,
and keeps that many warm when it is two or more. One warm instance is kept only where it pays: where the pool,
left at min-scale 0, would make more than `cold_price` requests an hour wait on a cold start, or where the
region's requests waiting on cold starts would exceed `cold_budget` of its traffic.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgeinfer.tuner.forecast import SlotForecast
from edgeinfer.tuner.profiles import ModelProfile
from edgeinfer.tuner.queueing import capacity, instances_for

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class TunerSettings:
    slo_ms: float = 100.0
    gateway_ms: float = 5.0  # the gateway's share of the SLO (cache lookup, routing)
    network_ms: float = 20.0  # client to edge and back
    target: float = 0.005  # P(warm response > budget)
    burst_target: float = 0.0005  # share of requests outrunning warm capacity during a reaction time
    cold_budget: float = 0.002  # share of a region's requests that may wait on a cold start
    cold_price: float = 2.0  # cold-start waits an hour that justify one warm instance
    kpa_tick_s: float = 2.0
    max_instances: int = 64

    def __post_init__(self) -> None:
        if self.budget_s <= 0:
            raise ValueError(
                f"--slo-ms {self.slo_ms:g} leaves nothing for the function after the gateway ({self.gateway_ms:g} ms) "
                f"and network ({self.network_ms:g} ms) shares; raise --slo-ms or lower the shares"
            )
        for name in ("target", "burst_target", "cold_budget"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be between 0 and 1 (a share), got {getattr(self, name)}")

    @property
    def budget_s(self) -> float:
        return (self.slo_ms - self.gateway_ms - self.network_ms) / 1000.0

    def reaction_s(self, profile: ModelProfile) -> float:
        """From a burst's onset to new capacity: the KPA's panic mode acts at the next tick (queued requests raise
        the concurrency at once, so the panic average crosses its threshold within a tick or two), then one cold
        start, its mean (panic starts at least as many instances as are ready, and the first ready ends the
        outrun, so this is on the long side)."""
        return self.kpa_tick_s + profile.cold_start.mean()


@dataclass(frozen=True, slots=True)
class Decision:
    region: str
    model: str
    start_s: float
    end_s: float
    label: str
    forecast_rps: float
    upper_rps: float
    min_scale: int
    warm_for_tail: int
    warm_for_bursts: int
    cold_waits_at_zero: float
    reason: str


@functools.lru_cache(maxsize=256)
def _capacities(profile: ModelProfile, budget_s: float, target: float, limit: int) -> tuple[float, ...]:
    return tuple(capacity(profile, m, budget_s, target) for m in range(limit + 1))


@dataclass(frozen=True, slots=True)
class BurstSizing:
    instances: int  # the larger of the two below
    for_tail: int  # the p99 guard: requests beyond the warm capacity at the SLO within burst_target
    for_cold: int  # the price rule: one more would save fewer than cold_price cold-start waits an hour
    waits_per_hour: float  # cold-start waits an hour still expected from bursts at `instances`
    next_saves: float  # what one more instance would save, waits an hour

    def describe(self, price: float) -> str:
        if self.instances == 0:
            return "0"
        return (
            f"{self.instances} (p99 guard {self.for_tail}; {self.waits_per_hour:.1f} cold waits/h left, "
            f"one more saves {self.next_saves:.1f} < {price:g})"
        )


def burst_instances(
    profile: ModelProfile, mean: float, burst_exposure: object, settings: TunerSettings, hour_s: float = 3600.0
) -> BurstSizing:
    """Warm instances for bursts that outrun the KPA during one reaction time, by two rules.

    - p99 guard: the share of requests beyond the warm capacity at the SLO stays under burst_target.
    - Price: requests beyond what the warm instances can serve at all (their full-batch throughput: a queue
      builds, the KPA panics and the requests it strands ride the new instances) wait on a cold start. One more
      warm instance is kept while it saves at least cold_price such waits an hour, the price at which a
      scale-to-zero pool keeps one instance warm, so a wait costs the same in a popular pool and a rare one.
    """
    exposure = burst_exposure if callable(burst_exposure) else None
    if mean <= 0 or exposure is None:
        return BurstSizing(0, 0, 0, 0.0, 0.0)
    limit = settings.max_instances
    caps = _capacities(profile, settings.budget_s, settings.target, limit)
    for_tail = next((m for m in range(1, limit + 1) if exposure(caps[m] / mean) <= settings.burst_target), limit)
    full = profile.max_batch / profile.batch_seconds(profile.max_batch)  # requests/s one instance serves at most

    def waits(m: int) -> float:
        return float(exposure(full * m / mean)) * mean * hour_s

    for_cold = 1
    while for_cold < limit and waits(for_cold) - waits(for_cold + 1) >= settings.cold_price:
        for_cold += 1
    chosen = max(for_tail, for_cold)
    saves = waits(chosen) - waits(chosen + 1) if chosen < limit else 0.0
    return BurstSizing(chosen, for_tail, for_cold, waits(chosen), saves)


def slot_label(start_s: float, end_s: float, hour_s: float, start_hour_of_week: float) -> str:
    def clock(t: float) -> tuple[str, str]:
        hours = (start_hour_of_week + t / hour_s) % 168
        minutes = round(hours * 60) % (168 * 60)
        return DAYS[minutes // (24 * 60)], f"{minutes // 60 % 24:02d}:{minutes % 60:02d}"

    day, first = clock(start_s)
    _, last = clock(end_s)
    return f"{day} {first}–{last}"


def decide_pool(
    region: str,
    model: str,
    profile: ModelProfile,
    forecast: SlotForecast,
    burst_exposure: object,
    settings: TunerSettings,
    start_s: float,
    end_s: float,
    label: str,
    hour_s: float = 3600.0,
) -> Decision:
    """One pool's decision before the region's cold-start budget is applied."""
    budget, limit = settings.budget_s, settings.max_instances
    mean, upper = forecast.mean_rps, max(forecast.upper_rps, forecast.mean_rps)
    path = instances_for(profile, upper, budget, settings.target, limit=limit) if upper > 0 else None
    warm_tail = path.instances if path is not None else 0
    burst = burst_instances(profile, mean, burst_exposure, settings, hour_s)
    warm_bursts = burst.instances
    active = max(warm_tail, warm_bursts)
    slot_hours = (end_s - start_s) / hour_s
    cold_rate = forecast.cold_waits_at_zero / max(slot_hours, 1e-9)
    if active >= 2:
        min_scale, why = active, ""
    elif cold_rate >= settings.cold_price:
        min_scale, why = 1, f"; {cold_rate:.1f} cold waits/h at zero ≥ {settings.cold_price:g} → keep 1"
    else:
        min_scale, why = 0, f"; {cold_rate:.2f} cold waits/h at zero < {settings.cold_price:g} → scale to zero"
    if path is not None:
        tail = (
            f"{path.per_request_s * 1000:.1f} ms per request at batch {path.batch} → {warm_tail} warm "
            f"(P(>{budget * 1000:.0f} ms) {path.p_late:.1e})"
        )
    else:
        tail = "no traffic"
    reason = (
        f"{region}/{model} {label}: forecast {mean:.2f} rps (p95 {upper:.2f}), {tail}; "
        f"bursts within {settings.reaction_s(profile):.1f}s → {burst.describe(settings.cold_price)}{why} "
        f"⇒ min-scale {min_scale}"
    )
    return Decision(region, model, start_s, end_s, label, mean, upper, min_scale, warm_tail, warm_bursts,
                    forecast.cold_waits_at_zero, reason)  # fmt: skip


def apply_region_budget(decisions: Sequence[Decision], settings: TunerSettings) -> list[Decision]:
    """Keep one warm in the pools with the most cold-start waits until the region's waits fit its budget."""
    requests = sum(d.forecast_rps * (d.end_s - d.start_s) for d in decisions)
    allowed = settings.cold_budget * requests
    cold = sorted((d for d in decisions if d.min_scale == 0), key=lambda d: -d.cold_waits_at_zero)
    expected = sum(d.cold_waits_at_zero for d in cold)
    flipped: dict[tuple[str, str], Decision] = {}
    for d in cold:
        if expected <= allowed or d.cold_waits_at_zero <= 0:
            break
        expected -= d.cold_waits_at_zero
        flipped[(d.region, d.model)] = Decision(
            d.region, d.model, d.start_s, d.end_s, d.label, d.forecast_rps, d.upper_rps, 1, d.warm_for_tail,
            d.warm_for_bursts, d.cold_waits_at_zero,
            d.reason.replace("⇒ min-scale 0", f"; region cold budget {allowed:.0f} waits exceeded ⇒ min-scale 1"),
        )  # fmt: skip
    return [flipped.get((d.region, d.model), d) for d in decisions]


def plan_table(decisions: Sequence[Decision], current: Mapping[tuple[str, str], int] | None = None) -> str:
    """Plain-text table of a plan (the CLI renders it with rich)."""
    lines = [f"{'region':<10} {'model':<10} {'slot':<16} {'rps':>8} {'p95':>8} {'tail':>4} {'burst':>5} {'min':>4}"]
    for d in decisions:
        now = f" (now {current[(d.region, d.model)]})" if current and (d.region, d.model) in current else ""
        lines.append(
            f"{d.region:<10} {d.model:<10} {d.label:<16} {d.forecast_rps:>8.2f} {d.upper_rps:>8.2f} "
            f"{d.warm_for_tail:>4} {d.warm_for_bursts:>5} {d.min_scale:>4}{now}"
        )
    return "\n".join(lines)
