"""The forecast learns the week's shape and follows a level shift; the planner explains each decision."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from edgeinfer.tuner.forecast import DemandModel, SlotForecast
from edgeinfer.tuner.planner import TunerSettings, apply_region_budget, burst_instances, decide_pool
from edgeinfer.tuner.profiles import CPU_PROFILES, GPU_PROFILES


def _history(days: int = 7, bin_s: float = 60.0, seed: int = 1) -> np.ndarray:
    t = np.arange(int(days * 86400 / bin_s)) * bin_s
    hour = (t / 3600) % 24
    rate = 2.0 + 18.0 * (np.cos(2 * np.pi * (hour - 14) / 24) + 1) / 2  # 2 rps at 02:00, 20 at 14:00
    return np.random.default_rng(seed).poisson(rate * bin_s)


def test_profile_follows_the_day_and_the_ewma_corrects_the_level() -> None:
    model = DemandModel(_history(), 60.0, start_hour_of_week=0.0)
    afternoon = model.forecast(14 * 3600, 14 * 3600 + 900)
    night = model.forecast(2 * 3600, 2 * 3600 + 900)
    assert afternoon.mean_rps > 5 * night.mean_rps
    assert abs(afternoon.mean_rps - 20) < 2.5
    assert afternoon.upper_rps >= afternoon.mean_rps
    recent = np.full(60, 40.0 * 60)  # the last hour ran at twice the profile
    shifted = model.forecast(14 * 3600, 14 * 3600 + 900, (recent, 60.0, 13 * 3600))
    assert shifted.level > 1.5 and shifted.mean_rps > 1.5 * afternoon.mean_rps


def test_decision_grows_with_demand_and_says_why() -> None:
    settings = TunerSettings()
    profile = GPU_PROFILES["vision"]
    slot = "Tue 14:00–14:15"
    small = decide_pool("eu-west", "m00", profile, SlotForecast(10, 12, 0, 1), None, settings, 0, 900, slot)
    big = decide_pool("eu-west", "m00", profile, SlotForecast(100, 120, 0, 1), None, settings, 0, 900, slot)
    assert big.min_scale > small.min_scale >= 0
    assert "eu-west/m00 Tue 14:00–14:15: forecast 100.00 rps (p95 120.00)" in big.reason
    assert f"min-scale {big.min_scale}" in big.reason and "25.0 ms per request at batch 1" in big.reason


def test_rare_pools_scale_to_zero_unless_the_region_budget_needs_them() -> None:
    settings = TunerSettings(cold_price=2.0, cold_budget=0.002)
    profile = GPU_PROFILES["embedder"]
    rare = decide_pool("r", "rare", profile, SlotForecast(0.0003, 0.0005, 0.2, 1), None, settings, 0, 900, "s")
    busy = decide_pool("r", "busy", profile, SlotForecast(0.01, 0.02, 8.0, 1), None, settings, 0, 900, "s")
    assert rare.min_scale == 0 and busy.min_scale == 1
    # A region with almost no other traffic cannot absorb 30 cold waits in a slot: the worst pool stays warm.
    many = decide_pool("r", "many", profile, SlotForecast(0.04, 0.05, 0.0, 1), None, settings, 0, 900, "s")
    noisy = SlotForecast(0.04, 0.05, 30.0 * 0.25, 1)
    worst = decide_pool("r", "worst", profile, noisy, None, TunerSettings(cold_price=1000.0), 0, 900, "s")
    planned = apply_region_budget([many, worst], settings)
    assert [d.min_scale for d in planned] == [0, 1]
    assert "region cold budget" in planned[1].reason


def test_a_short_burst_does_not_raise_the_level_but_a_shift_does() -> None:
    model = DemandModel(_history(), 60.0, start_hour_of_week=0.0)
    start = 14 * 3600
    centres = start - 4 * 3600 + (np.arange(240) + 0.5) * 60.0
    normal = np.random.default_rng(3).poisson(model.rate_at(centres) * 60.0).astype(np.float64)
    burst = normal.copy()
    burst[-10:-8] *= 8  # two minutes at 8x, twenty minutes before the slot
    calm = model.forecast(start, start + 900, (normal, 60.0, start - 4 * 3600))
    bursty = model.forecast(start, start + 900, (burst, 60.0, start - 4 * 3600))
    assert abs(calm.level - 1) < 0.1 and abs(bursty.level - calm.level) < 0.05
    shifted = model.forecast(start, start + 900, (normal * 1.6, 60.0, start - 4 * 3600))
    assert 1.45 < shifted.level < 1.75


def test_bursts_buy_warm_instances_at_the_price_of_a_cold_wait() -> None:
    settings = TunerSettings(burst_target=0.5)  # the price rule alone; the p99 guard is checked below
    profile = GPU_PROFILES["vision"]  # 40 requests/s per instance at most

    def exposure(headroom: float) -> float:  # share of requests beyond `headroom` x the forecast: bursts up to 8x
        return 2e-5 * max(0.0, 8.0 - headroom) ** 2

    cheap = burst_instances(profile, 30.0, exposure, settings, 3600.0)
    dear = burst_instances(profile, 30.0, exposure, replace(settings, cold_price=20.0), 3600.0)
    assert (dear.instances, cheap.instances) == (3, 6)  # 6 x 40 rps covers an 8x burst of 30 rps
    for sized, price in ((cheap, 2.0), (dear, 20.0)):
        assert sized.next_saves < price  # one more would not pay; the last one did:
        less = burst_instances(profile, 30.0, exposure, replace(settings, max_instances=sized.instances - 1))
        assert less.instances == sized.instances - 1
        assert less.waits_per_hour - sized.waits_per_hour >= price
    assert "cold waits/h left" in cheap.describe(2.0)
    # The p99 guard counts requests beyond the capacity at the SLO (below the full throughput): it asks for more.
    guarded = burst_instances(profile, 30.0, exposure, replace(settings, burst_target=1e-6), 3600.0)
    assert guarded.for_tail > cheap.instances and guarded.instances == guarded.for_tail
    # A pool too quiet to lose a wait an hour to bursts needs nothing more for them.
    assert burst_instances(profile, 0.001, exposure, settings).instances == 1


def test_the_reaction_time_is_a_tick_and_one_cold_start() -> None:
    settings = TunerSettings()
    vision, fraud = GPU_PROFILES["vision"], CPU_PROFILES["fraud"]
    assert abs(settings.reaction_s(vision) - (2.0 + vision.cold_start.mean())) < 1e-9
    assert 6.5 < settings.reaction_s(vision) < 7.5  # half the starts build a TensorRT engine (9 s)
    assert 2.6 < settings.reaction_s(fraud) < 2.9
