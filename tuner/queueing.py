"""M/G/c waiting-time tail: Erlang C with the Allen–Cunneen correction, and the warm instances it asks for.

Erlang C gives P(wait > 0) for c servers at offered load a = λ/μ. In M/M/c the wait, given that a request
waits, is exponential with rate cμ − λ. Allen–Cunneen scales the mean wait by (ca² + cs²)/2 for general
arrivals and service (ca², cs²: squared coefficients of variation); we scale the conditional exponential's mean
the same way, so P(W > t) ≈ C(c, a) · exp(−(cμ − λ) · t · 2 / (ca² + cs²)).

An instance is one server whose batches grow with its load: at per-instance rate r it forms batches of b with
b ≈ r · batch_seconds(b) (the requests that arrive while the previous batch runs), up to max_batch. A request's
response is its wait plus the batch it rides in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeinfer.tuner.profiles import ModelProfile


def erlang_c(servers: int, offered: float) -> float:
    """P(an arrival waits) in M/M/c with `servers` servers and `offered` erlangs (λ/μ); 1 when saturated."""
    if servers <= 0 or offered >= servers:
        return 1.0
    if offered <= 0:
        return 0.0
    blocking = 1.0  # Erlang B by the stable recursion B(k) = aB(k-1) / (k + aB(k-1))
    for k in range(1, servers + 1):
        blocking = offered * blocking / (k + offered * blocking)
    return servers * blocking / (servers - offered * (1.0 - blocking))


def wait_tail(servers: int, rate: float, service_s: float, t: float, ca2: float = 1.0, cs2: float = 1.0) -> float:
    """P(W > t) in M/G/c (G/G/c with ca2 ≠ 1) by Erlang C with the Allen–Cunneen correction."""
    if rate <= 0:
        return 0.0
    if servers <= 0:
        return 1.0
    capacity = servers / service_s
    if rate >= capacity:
        return 1.0
    if t <= 0:
        return erlang_c(servers, rate * service_s)
    factor = max((ca2 + cs2) / 2.0, 1e-6)
    return erlang_c(servers, rate * service_s) * math.exp(-(capacity - rate) * t / factor)


@dataclass(frozen=True, slots=True)
class WarmPath:
    instances: int
    rate: float
    batch: int  # batch size an instance forms at this load
    per_request_s: float  # batch_seconds(batch) / batch
    batch_s: float
    utilization: float
    p_late: float  # P(response > budget)


def operating_batch(profile: ModelProfile, per_instance_rate: float) -> int:
    """The batch an instance forms: the smallest b with r · batch_seconds(b) <= b, else max_batch."""
    for b in range(1, profile.max_batch + 1):
        if per_instance_rate * profile.batch_seconds(b) <= b:
            return b
    return profile.max_batch


def warm_path(profile: ModelProfile, instances: int, rate: float, budget_s: float, ca2: float = 1.0) -> WarmPath:
    """How `instances` warm instances serve `rate` requests/s against a response budget, at the batch size
    that serves it best (a dynamic batcher's batches grow as the queue does)."""
    if instances <= 0:
        return WarmPath(0, rate, 1, profile.batch1_s, profile.batch1_s, math.inf, 1.0 if rate > 0 else 0.0)
    best: WarmPath | None = None
    for batch in range(max(1, operating_batch(profile, rate / instances)), profile.max_batch + 1):
        batch_s = profile.batch_seconds(batch)
        per_request = batch_s / batch
        utilization = rate * per_request / instances
        p_late = 1.0 if batch_s >= budget_s else wait_tail(
            instances, rate, per_request, budget_s - batch_s, ca2, profile.service_cv2
        )
        path = WarmPath(instances, rate, batch, per_request, batch_s, utilization, p_late)
        if best is None or path.p_late < best.p_late:
            best = path
    assert best is not None
    return best


def instances_for(
    profile: ModelProfile, rate: float, budget_s: float, target: float, ca2: float = 1.0, limit: int = 1000
) -> WarmPath:
    """The fewest instances (at least one) whose P(response > budget) <= target at `rate`."""
    for c in range(1, limit + 1):
        path = warm_path(profile, c, rate, budget_s, ca2)
        if path.p_late <= target:
            return path
    raise ValueError(
        f"{profile.name}: {limit} instances cannot serve {rate:.1f} rps within {budget_s * 1000:.0f} ms; "
        "raise the SLO or lower the gateway/network share"
    )


def capacity(profile: ModelProfile, instances: int, budget_s: float, target: float, ca2: float = 1.0) -> float:
    """The highest rate (requests/s) `instances` serve with P(response > budget) <= target (bisection)."""
    if instances <= 0:
        return 0.0
    low, high = 0.0, instances * profile.max_batch / profile.batch_seconds(profile.max_batch)
    for _ in range(50):
        mid = (low + high) / 2
        if warm_path(profile, instances, mid, budget_s, ca2).p_late <= target:
            low = mid
        else:
            high = mid
    return low
