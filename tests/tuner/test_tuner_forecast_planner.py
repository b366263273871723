"""The forecast learns the week's shape and follows a level shift; the planner explains each decision."""

from __future__ import annotations

import numpy as np

from tuner.forecast import DemandModel, SlotForecast
from tuner.planner import TunerSettings, apply_region_budget, decide_pool
from tuner.profiles import GPU_PROFILES


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
