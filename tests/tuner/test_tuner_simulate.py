"""The simulator against queueing theory, and the policies' schedules."""

from __future__ import annotations

import numpy as np

from edgeinfer.functions.config import Autoscaling
from edgeinfer.tuner.policies import hybrid_windows
from edgeinfer.tuner.profiles import ColdStart, LogNormal, ModelProfile
from edgeinfer.tuner.simulate import SimSettings, base_knobs, simulate_pool


def _poisson(rate: float, duration: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(rng.random(rng.poisson(rate * duration)) * duration)


def test_one_warm_instance_waits_as_pollaczek_khinchine_says() -> None:
    # M/G/1 at rho = 0.6 with cs2 = 1: mean wait = rho·s·(1 + cs2) / (2(1 - rho)).
    profile = ModelProfile("m", 0.01, service_cv2=1.0)
    knobs = Autoscaling.model_validate({"min-scale": 1, "max-scale": 1})
    arrivals = _poisson(60.0, 2000.0, 1)
    run = simulate_pool(("r", "m"), arrivals, profile, [(0.0, knobs)], 2000.0, SimSettings(max_instances=1), 1)
    mean_wait = float(run.latency.mean()) - 0.01
    expected = 0.6 * 0.01 * 2 / (2 * 0.4)
    assert abs(mean_wait - expected) / expected < 0.1
    assert not run.cold.any() and run.spawns == 0


def test_scale_to_zero_makes_requests_wait_on_cold_starts_and_min_scale_prevents_it() -> None:
    cold = ColdStart(LogNormal(1.0, 1.2))
    profile = ModelProfile("m", 0.005, cold_start=cold)
    arrivals = np.sort(np.concatenate([np.arange(0, 3600, 300.0), np.arange(0, 3600, 300.0) + 0.5]))
    zero = simulate_pool(("r", "m"), arrivals, profile, [(0.0, base_knobs(profile))], 3600.0, SimSettings(), 1)
    # Every 5 minutes the pool has scaled to zero: the pair of requests waits on the cold start.
    assert zero.cold.sum() >= len(arrivals) - 2
    assert np.all(zero.latency[zero.cold] > 0.25)  # the second of a pair arrives 0.5 s into the cold start
    warm_knobs = base_knobs(profile).model_copy(update={"min_scale": 1})
    warm = simulate_pool(("r", "m"), arrivals, profile, [(0.0, warm_knobs)], 3600.0, SimSettings(), 1)
    assert warm.cold.sum() == 0
    hours = sum(b - a for a, b in warm.intervals) / 3600
    assert abs(hours - 1.0) < 0.01


def test_kpa_scales_out_under_a_burst() -> None:
    profile = ModelProfile("m", 0.02, cold_start=ColdStart(LogNormal(1.0, 1.2)))
    arrivals = np.sort(np.concatenate([_poisson(10.0, 600.0, 2), 200 + _poisson(150.0, 60.0, 3)]))
    run = simulate_pool(("r", "m"), arrivals, profile, [(0.0, base_knobs(profile))], 600.0, SimSettings(), 2)
    assert run.spawns >= 2  # scaled out for the burst
    during = (arrivals > 200) & (arrivals < 260)
    assert run.cold[during].sum() > 0


def test_hybrid_histogram_prewarms_a_periodic_function() -> None:
    every_30 = np.arange(0, 24 * 60, 30)  # an invocation every 30 minutes
    windows = hybrid_windows(every_30)
    late = windows[-1]
    # Idle times are all 29 minutes: unload, pre-warm before the next one, keep a short while.
    assert 24 <= late[0] - every_30[-1] <= 30 and late[1] - late[0] <= 10
    first = windows[0]
    assert first[1] - first[0] - 1 == 240  # too few idle times yet: keep alive for the range after the minute
