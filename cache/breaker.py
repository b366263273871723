"""A circuit breaker, so a dead or stalled Redis costs nothing instead of a timeout per request.

closed: every call goes through; `failure_threshold` consecutive failures open it.
open: calls are refused until `cooldown_seconds` have passed.
half-open: one probe goes through; its success closes the breaker, its failure
re-opens it for another cooldown. A probe that never reports (its caller was
cancelled) is given up after one cooldown, so the breaker cannot stick half-open.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_seconds: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._listeners: list[Callable[[BreakerState, BreakerState], None]] = []
        if on_change is not None:
            self._listeners.append(on_change)
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_at: float | None = None
        self.opened_count = 0
        self._parent: CircuitBreaker | None = None

    def child(self) -> CircuitBreaker:
        """A new closed breaker with these settings, whose openings also count in this one's `opened_count`: one
        per node of a Redis Cluster, so a dead node is bypassed while the others serve, and the metric sees it."""
        child = CircuitBreaker(self.failure_threshold, self.cooldown_seconds, clock=self._clock)
        child._parent = self
        return child

    def add_listener(self, listener: Callable[[BreakerState, BreakerState], None]) -> None:
        """Call `listener(old, new)` on every state change."""
        self._listeners.append(listener)

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def rejecting(self) -> bool:
        """True while calls would be refused; unlike allow() it never claims the half-open probe."""
        if self._state is BreakerState.OPEN:
            return self._clock() - self._opened_at < self.cooldown_seconds
        if self._state is BreakerState.HALF_OPEN:
            return self._probe_at is not None and self._clock() - self._probe_at < self.cooldown_seconds
        return False

    def allow(self) -> bool:
        """May a call go through now? In half-open, True once: the caller is the probe and must report back."""
        if self._state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if self._state is BreakerState.OPEN:
            if now - self._opened_at < self.cooldown_seconds:
                return False
            self._set(BreakerState.HALF_OPEN)
            self._probe_at = None
        if self._probe_at is not None and now - self._probe_at < self.cooldown_seconds:
            return False
        self._probe_at = now
        return True

    def record_success(self) -> None:
        if self._state is BreakerState.OPEN:
            # A call that started before the breaker opened proves little; wait for the probe.
            return
        self._failures = 0
        self._probe_at = None
        self._set(BreakerState.CLOSED)

    def record_failure(self) -> None:
        if self._state is BreakerState.OPEN:
            return
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._probe_at = None
            self.opened_count += 1
            if self._parent is not None:
                self._parent.opened_count += 1
            self._set(BreakerState.OPEN)

    def _set(self, state: BreakerState) -> None:
        if state is not self._state:
            old, self._state = self._state, state
            for listener in self._listeners:
                listener(old, state)
