"""The prediction cache the gateway talks to: an in-process L1 in front of Redis.

get: L1, then Redis (a Redis hit is copied into L1 for its remaining TTL).
put: into L1 at once; the Redis write runs in a background task, at most
`max_pending_writes` at a time; beyond that writes are dropped and counted, so
a slow Redis can never build an unbounded backlog. put() never awaits and
never raises.

XFetch (Vattani, Chierichetti, Lowenstein: "Optimal Probabilistic Cache
Stampede Prevention", VLDB 2015): a hit is flagged `refresh=True` with a
probability that rises as expiry nears, scaled by how long the value took to
compute, so one caller recomputes it in the background before it expires and
the others never see a miss.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from edgeinfer.cache.entry import encode_entry
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.redis_store import RedisStore
from edgeinfer.cache.stats import CacheStats, Counters

log = logging.getLogger("edgeinfer.cache")

Tier = Literal["l1", "redis"]

DEFAULT_MAX_ENTRY_BYTES: Final = 4 << 20
DEFAULT_MAX_PENDING_WRITES: Final = 256
DEFAULT_XFETCH_BETA: Final = 1.0
# L1 lifetime of a Redis entry that has no TTL of its own (written by another tool).
DEFAULT_PROMOTE_TTL: Final = 60.0


@dataclass(frozen=True, slots=True)
class CacheHit:
    payload: bytes
    tier: Tier
    # XFetch says: recompute this in the background now (the value is still served).
    refresh: bool = False
    # Remaining lifetime, seconds (inf if the entry has none).
    ttl_seconds: float = math.inf
    # What the miss that filled the entry cost: XFetch's delta, carried to a copy of the entry made from it.
    compute_seconds: float = 0.0


class PredictionCache:
    """Either tier may be absent: L1 only (no Redis URL), Redis only (l1=None), or neither (all misses)."""

    def __init__(
        self,
        *,
        l1: L1Cache | None = None,
        redis: RedisStore | None = None,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        max_pending_writes: int = DEFAULT_MAX_PENDING_WRITES,
        xfetch_beta: float = DEFAULT_XFETCH_BETA,
        promote_ttl_seconds: float = DEFAULT_PROMOTE_TTL,
        wall_clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if xfetch_beta < 0:
            raise ValueError("xfetch_beta must be >= 0 (0 disables early refresh)")
        self.l1 = l1
        self.redis = redis
        self.max_entry_bytes = max_entry_bytes
        self.max_pending_writes = max_pending_writes
        self.xfetch_beta = xfetch_beta
        self.promote_ttl_seconds = promote_ttl_seconds
        self.counters = redis.counters if redis is not None else Counters()
        self._wall_clock = wall_clock
        self._rand = rand
        self._pending: set[asyncio.Task[None]] = set()

    async def start(self) -> bool:
        """Open a Redis connection ahead of traffic; False if Redis is absent or not answering (not fatal)."""
        return self.redis is not None and await self.redis.start()

    async def get(self, key: bytes) -> CacheHit | None:
        """A hit from the nearest tier, or None. Never raises; a Redis problem is a miss within its budget."""
        l1 = self.l1
        hit = self._l1_hit(key)
        if hit is not None:
            return hit
        if self.redis is not None:
            stored = await self.redis.get(key)
            if stored is not None:
                self.counters.hits_redis += 1
                entry = stored.entry
                remaining = stored.ttl_seconds if stored.ttl_seconds is not None else math.inf
                if l1 is not None:
                    l1_ttl = stored.ttl_seconds if stored.ttl_seconds is not None else self.promote_ttl_seconds
                    l1.put(key, entry.payload, l1_ttl, entry.compute_seconds)
                refresh = self._xfetch(remaining, entry.compute_seconds)
                return CacheHit(entry.payload, "redis", refresh, remaining, entry.compute_seconds)
            # An identical request's call may have finished and filled L1 while Redis answered: without this
            # look the caller would miss its single flight and call the function a second time.
            hit = self._l1_hit(key)
            if hit is not None:
                return hit
        self.counters.misses += 1
        return None

    def _l1_hit(self, key: bytes) -> CacheHit | None:
        l1 = self.l1
        item = l1.get(key) if l1 is not None else None
        if l1 is None or item is None:
            return None
        self.counters.hits_l1 += 1
        remaining = item.expires_at - l1.clock()
        return CacheHit(
            item.payload, "l1", self._xfetch(remaining, item.compute_seconds), remaining, item.compute_seconds
        )

    def put(self, key: bytes, payload: bytes, ttl_seconds: float, compute_seconds: float = 0.0) -> bool:
        """Cache `payload` for `ttl_seconds`; False if it was not stored anywhere. Never blocks, never raises.

        `compute_seconds` is what producing it cost (XFetch's delta); 0 disables early refresh for it.
        """
        try:
            if not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
                return False
            if len(payload) > self.max_entry_bytes:
                self.counters.too_large += 1
                return False
            stored = self.l1.put(key, payload, ttl_seconds, compute_seconds) if self.l1 is not None else False
            if self.redis is not None:
                stored = self._schedule_write(self.redis, key, payload, ttl_seconds, compute_seconds) or stored
            return stored
        except Exception:
            self.counters.internal_errors += 1
            log.exception("prediction cache put failed; continuing without caching")
            return False

    def stats(self) -> CacheStats:
        c = self.counters
        l1 = self.l1
        breaker = self.redis.breaker if self.redis is not None else None
        return CacheStats(
            hits_l1=c.hits_l1,
            hits_redis=c.hits_redis,
            misses=c.misses,
            redis_bypassed=c.redis_bypassed,
            redis_errors=c.redis_errors,
            redis_timeouts=c.redis_timeouts,
            redis_pool_timeouts=c.redis_pool_timeouts,
            redis_writes=c.redis_writes,
            write_drops=c.write_drops,
            too_large=c.too_large,
            corrupt_entries=c.corrupt_entries,
            refreshes_suggested=c.refreshes_suggested,
            internal_errors=c.internal_errors,
            l1_evictions=l1.evictions if l1 is not None else 0,
            l1_expirations=l1.expirations if l1 is not None else 0,
            breaker_opened=breaker.opened_count if breaker is not None else 0,
            l1_bytes=l1.size_bytes if l1 is not None else 0,
            l1_entries=len(l1) if l1 is not None else 0,
            pending_writes=len(self._pending),
            redis_connections=self.redis.connections if self.redis is not None else 0,
            breaker_state=breaker.state.value if breaker is not None else "none",
        )

    @property
    def pending_writes(self) -> int:
        return len(self._pending)

    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until the pending Redis writes finish; True if none is left."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=timeout)
        return not self._pending

    async def close(self, timeout: float = 1.0) -> None:
        """Give pending writes up to `timeout` seconds, cancel the rest, close the Redis client."""
        if not await self.flush(timeout):
            for task in list(self._pending):
                task.cancel()
            await asyncio.gather(*self._pending, return_exceptions=True)
        if self.redis is not None:
            await self.redis.close()

    def _xfetch(self, remaining: float, compute_seconds: float) -> bool:
        # Refresh when delta * beta * -ln(U) >= time to expiry, U uniform in (0, 1].
        if self.xfetch_beta <= 0 or compute_seconds <= 0 or math.isinf(remaining):
            return False
        if compute_seconds * self.xfetch_beta * -math.log(1.0 - self._rand()) < remaining:
            return False
        self.counters.refreshes_suggested += 1
        return True

    def _schedule_write(
        self, redis: RedisStore, key: bytes, payload: bytes, ttl_seconds: float, compute_seconds: float
    ) -> bool:
        if redis.breaker.rejecting():
            # Redis is known down: do not even queue the write.
            self.counters.redis_bypassed += 1
            return False
        if len(self._pending) >= self.max_pending_writes:
            self.counters.write_drops += 1
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.counters.write_drops += 1
            return False
        task = loop.create_task(self._write(redis, key, payload, ttl_seconds, compute_seconds))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return True

    async def _write(
        self, redis: RedisStore, key: bytes, payload: bytes, ttl_seconds: float, compute_seconds: float
    ) -> None:
        # Encoded here, not in put(): the copy and checksum stay off the request's path.
        value = encode_entry(payload, self._wall_clock(), compute_seconds)
        await redis.set(key, value, ttl_seconds)
