"""Erlang C, the Allen–Cunneen tail, and the instance count it asks for."""

from __future__ import annotations

import math

import pytest

from edgeinfer.tuner.profiles import ModelProfile
from edgeinfer.tuner.queueing import capacity, erlang_c, instances_for, operating_batch, wait_tail, warm_path


def test_erlang_c_matches_closed_forms() -> None:
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)  # M/M/2 at a = 1
    assert erlang_c(3, 3.0) == 1.0  # saturated
    assert erlang_c(4, 0.0) == 0.0


def test_wait_tail_is_mmc_when_variation_is_exponential() -> None:
    # M/M/1: P(W > t) = rho · exp(-(mu - lambda) t)
    rate, service, t = 50.0, 0.01, 0.02
    expected = 0.5 * math.exp(-(100 - 50) * t)
    assert wait_tail(1, rate, service, t, ca2=1.0, cs2=1.0) == pytest.approx(expected)
    # Less variable service waits less; more variable arrivals wait more.
    assert wait_tail(1, rate, service, t, 1.0, 0.0) < expected < wait_tail(1, rate, service, t, 2.0, 1.0)


def test_more_load_needs_more_instances_and_batching_helps() -> None:
    plain = ModelProfile("plain", 0.025)
    counts = [instances_for(plain, r, 0.075, 0.005).instances for r in (10, 40, 80, 160)]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    batched = ModelProfile("batched", 0.025, max_batch=8, speedup=4.0)
    assert instances_for(batched, 160, 0.075, 0.005).instances < counts[-1]
    assert operating_batch(batched, 200.0) > 1


def test_capacity_is_the_edge_of_the_target() -> None:
    profile = ModelProfile("p", 0.01, max_batch=4, speedup=2.0)
    edge = capacity(profile, 3, 0.075, 0.005)
    assert warm_path(profile, 3, edge * 0.99, 0.075).p_late <= 0.005
    assert warm_path(profile, 3, edge * 1.05, 0.075).p_late > 0.005
