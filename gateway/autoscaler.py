"""Knative's KPA decision rule, as a pure function of concurrency samples and time.

desired = ceil(observed concurrency / (target × utilization)), averaged over
the stable window; over the panic window (a percentage of it) a second
estimate that, once it reaches panic-threshold × the ready instances, puts the
autoscaler in panic: it then never scales down until a whole stable window
passes without the threshold being crossed. scale-down-delay holds the
highest recent decision; scaling to zero waits until the stable window has
seen no traffic plus the retention period; activation-scale is the floor when
waking from zero; min-scale and max-scale clamp the result.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from edgeinfer.functions.config import Autoscaling


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    panic: bool
    stable_concurrency: float
    panic_concurrency: float
    reason: str


class KPA:
    def __init__(self, knobs: Autoscaling, max_instances: int, started: float | None = None) -> None:
        self.knobs = knobs
        self.max_instances = max_instances
        self._samples: deque[tuple[float, float]] = deque()
        self._panic_since: float | None = None
        self._panic_peak = 0
        self._recent: deque[tuple[float, int]] = deque()  # decisions, for scale-down-delay
        # Instances started before any traffic count as just used: like a new Knative revision at
        # initial-scale, they stay for a stable window (plus retention) before scaling to zero.
        self._last_active: float | None = started

    def record(self, now: float, concurrency: float) -> None:
        self._samples.append((now, concurrency))
        if concurrency > 0:
            self._last_active = now
        horizon = now - self.knobs.window
        while self._samples and self._samples[0][0] < horizon:
            self._samples.popleft()

    def _average(self, now: float, span: float) -> float:
        values = [c for t, c in self._samples if t >= now - span]
        return sum(values) / len(values) if values else 0.0

    def decide(self, now: float, ready: int, starting: int = 0) -> Decision:
        k = self.knobs
        target = k.effective_target
        stable = self._average(now, k.window)
        panic_avg = self._average(now, k.panic_window)
        want_stable = math.ceil(stable / target) if stable > 0 else 0
        want_panic = math.ceil(panic_avg / target) if panic_avg > 0 else 0
        over = want_panic / max(1, ready) >= k.panic_threshold_percentage / 100 and want_panic > ready
        if over:
            if self._panic_since is None:
                self._panic_peak = ready + starting
            self._panic_since = now
        elif self._panic_since is not None and now - self._panic_since >= k.window:
            self._panic_since = None
            self._panic_peak = 0
        panicking = self._panic_since is not None
        if panicking:
            desired = max(want_panic, self._panic_peak)
            self._panic_peak = desired
            reason = f"panic: {panic_avg:.1f} concurrent over {k.panic_window:.0f}s"
        else:
            desired = want_stable
            reason = f"stable: {stable:.1f} concurrent over {k.window:.0f}s, target {target:.1f} each"
        # scale-down-delay: hold the highest decision of the last delay period.
        self._recent.append((now, desired))
        while self._recent and self._recent[0][0] < now - k.scale_down_delay:
            self._recent.popleft()
        held = max(d for _, d in self._recent)
        if held > desired:
            desired, reason = held, f"{reason}; held by scale-down-delay {k.scale_down_delay:.0f}s"
        current = ready + starting
        if desired == 0 and current > 0:
            idle_for = math.inf if self._last_active is None else now - self._last_active
            keep_until = k.window + k.scale_to_zero_pod_retention_period
            if idle_for < keep_until:
                desired = 1
                reason = f"{reason}; last instance kept until {keep_until:.0f}s without traffic"
        if current == 0 and desired > 0:
            desired = max(desired, k.activation_scale)
        upper = k.max_scale or self.max_instances
        upper = min(upper, self.max_instances)
        clamped = min(max(desired, k.min_scale), upper)
        if clamped != desired:
            reason = f"{reason}; clamped to [{k.min_scale}, {upper}]"
        return Decision(clamped, panicking, stable, panic_avg, reason)
