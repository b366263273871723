"""Circuit breaker transitions on an injected clock."""

from __future__ import annotations

from edgeinfer.cache.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_only() -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker(3, 1.0, clock=Clock(), on_change=lambda old, new: changes.append((old, new)))
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the run
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    assert not b.allow() and b.rejecting()
    assert changes == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert b.opened_count == 1


def test_half_open_probe_then_close() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 2.0, clock=clock)
    b.record_failure()
    clock.now = 1.999
    assert not b.allow()
    clock.now = 2.0
    assert not b.rejecting()
    assert b.allow()  # the probe
    assert b.state is BreakerState.HALF_OPEN
    assert not b.allow()  # only one probe at a time
    assert b.rejecting()
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.allow()


def test_failed_probe_reopens_for_a_new_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(2, 1.0, clock=clock)
    b.record_failure()
    b.record_failure()
    clock.now = 1.5
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN
    clock.now = 2.4
    assert not b.allow()
    clock.now = 2.5
    assert b.allow()


def test_lost_probe_is_replaced_after_a_cooldown() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 1.0, clock=clock)
    b.record_failure()
    clock.now = 1.0
    assert b.allow()  # this probe's caller is cancelled and never reports
    clock.now = 1.5
    assert not b.allow()
    clock.now = 2.0
    assert b.allow()


def test_success_while_open_is_ignored() -> None:
    clock = Clock()
    b = CircuitBreaker(1, 1.0, clock=clock)
    b.record_failure()
    b.record_success()  # a call that started before the breaker opened
    assert b.state is BreakerState.OPEN
