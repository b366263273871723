"""Cache counters, kept as plain integers so the hot path pays an attribute increment and nothing else.

The gateway maps a CacheStats snapshot to Prometheus at scrape time (a custom
collector), so this package needs no metrics library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Counters:
    """Monotonic counters shared by the Redis store and the prediction cache."""

    hits_l1: int = 0
    hits_redis: int = 0
    misses: int = 0
    # Redis operations the open circuit breaker refused without trying.
    redis_bypassed: int = 0
    redis_errors: int = 0
    redis_timeouts: int = 0
    # Timeouts (also in redis_timeouts) that never got a connection: all busy, or still connecting.
    redis_pool_timeouts: int = 0
    redis_writes: int = 0
    # Puts whose Redis write was dropped because too many writes were pending.
    write_drops: int = 0
    # Responses over max_entry_bytes, never stored.
    too_large: int = 0
    # Values that failed to decode; each was deleted and counted as a miss.
    corrupt_entries: int = 0
    # Hits that XFetch flagged for an early background refresh.
    refreshes_suggested: int = 0
    # Unexpected exceptions swallowed so the caller never sees them.
    internal_errors: int = 0


@dataclass(frozen=True, slots=True)
class CacheStats:
    """A point-in-time snapshot: counters (monotonic) plus gauges of the moment."""

    hits_l1: int
    hits_redis: int
    misses: int
    redis_bypassed: int
    redis_errors: int
    redis_timeouts: int
    redis_pool_timeouts: int
    redis_writes: int
    write_drops: int
    too_large: int
    corrupt_entries: int
    refreshes_suggested: int
    internal_errors: int
    l1_evictions: int
    l1_expirations: int
    breaker_opened: int
    # Gauges.
    l1_bytes: int
    l1_entries: int
    pending_writes: int
    redis_connections: int
    breaker_state: str
