from __future__ import annotations

from edgeinfer.functions.config import Autoscaling
from edgeinfer.gateway.autoscaler import KPA


def knobs(**kw: object) -> Autoscaling:
    base = {"window": "60s", "target": 10, "target-utilization-percentage": 100}
    base.update({k.replace("_", "-"): v for k, v in kw.items()})
    return Autoscaling.model_validate(base)


def feed(kpa: KPA, start: float, end: float, concurrency: float, step: float = 1.0) -> float:
    t = start
    while t < end:
        kpa.record(t, concurrency)
        t += step
    return t


def test_desired_follows_the_kpa_rule() -> None:
    kpa = KPA(knobs(), max_instances=100)
    now = feed(kpa, 0, 60, 35.0)
    decision = kpa.decide(now, ready=4)
    assert decision.desired == 4 and not decision.panic  # ceil(35 / (10 × 100%))
    kpa = KPA(knobs(**{"target_utilization_percentage": 70}), max_instances=100)
    now = feed(kpa, 0, 60, 35.0)
    assert kpa.decide(now, ready=5).desired == 5  # ceil(35 / 7)


def test_panic_at_twice_the_ready_capacity_and_no_scale_down_while_panicking() -> None:
    kpa = KPA(knobs(), max_instances=100)
    now = feed(kpa, 0, 54, 10.0)
    assert kpa.decide(now, ready=1).desired == 1
    now = feed(kpa, now, now + 6, 40.0)  # the 6 s panic window sees 40: 4 wanted, 4 ≥ 2 × 1 ready
    decision = kpa.decide(now, ready=1)
    assert decision.panic and decision.desired == 4
    now = feed(kpa, now, now + 10, 0.0)  # traffic gone, but still within a stable window of the panic
    decision = kpa.decide(now, ready=4)
    assert decision.panic and decision.desired == 4
    now = feed(kpa, now, now + 61, 0.0)
    assert not kpa.decide(now, ready=4).panic


def test_below_the_panic_threshold_there_is_no_panic() -> None:
    kpa = KPA(knobs(), max_instances=100)
    now = feed(kpa, 0, 60, 15.0)  # wants 2 with 2 ready: ratio 1 < 2
    assert not kpa.decide(now, ready=2).panic


def test_scale_down_delay_holds_the_recent_peak() -> None:
    kpa = KPA(knobs(scale_down_delay="30s", window="6s"), max_instances=100)
    now = feed(kpa, 0, 6, 30.0)
    assert kpa.decide(now, ready=3).desired == 3
    now = feed(kpa, now, now + 10, 10.0)
    assert kpa.decide(now, ready=3).desired == 3  # held
    now = feed(kpa, now, now + 31, 10.0)
    for t in range(int(now) - 25, int(now)):
        kpa.decide(float(t), ready=3)
    assert kpa.decide(now, ready=3).desired == 1


def test_scale_to_zero_waits_for_an_idle_window_plus_retention() -> None:
    kpa = KPA(knobs(window="6s", scale_to_zero_pod_retention_period="10s"), max_instances=100)
    now = feed(kpa, 0, 6, 5.0)
    now = feed(kpa, now, now + 12, 0.0)  # idle 12 s: window passed, retention not
    assert kpa.decide(now, ready=1).desired == 1
    now = feed(kpa, now, now + 5, 0.0)
    assert kpa.decide(now, ready=1).desired == 0


def test_initial_instances_stay_a_stable_window_without_traffic() -> None:
    kpa = KPA(knobs(window="60s"), max_instances=100, started=0.0)
    assert kpa.decide(10.0, ready=1).desired == 1
    assert kpa.decide(61.0, ready=1).desired == 0


def test_min_max_and_activation_scale() -> None:
    kpa = KPA(knobs(min_scale=2, max_scale=3), max_instances=100)
    assert kpa.decide(0.0, ready=0).desired == 2
    now = feed(kpa, 0, 60, 500.0)
    assert kpa.decide(now, ready=3).desired == 3
    kpa = KPA(knobs(activation_scale=3), max_instances=100)
    kpa.record(0.0, 1.0)
    assert kpa.decide(0.0, ready=0).desired == 3
    kpa = KPA(knobs(), max_instances=2)
    now = feed(kpa, 0, 60, 500.0)
    assert kpa.decide(now, ready=2).desired == 2  # the local pool's cap


def test_container_concurrency_caps_the_target() -> None:
    a = knobs(container_concurrency=4)
    assert a.effective_target == 4.0
    kpa = KPA(a, max_instances=100)
    now = feed(kpa, 0, 60, 10.0)
    assert kpa.decide(now, ready=3).desired == 3
