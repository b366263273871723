"""Redis down, slow, or blocked: the cache answers within its budget, never raises, and heals itself."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis
from testkit.procs import free_port

from edgeinfer.cache.breaker import BreakerState, CircuitBreaker
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.redis_store import RedisStore

# Budgets for these tests: small enough to matter, large enough for a busy 2-core box.
GET_BUDGET = 0.01
# Every get must return within this, whatever Redis does. Far above the budget (a loaded machine adds its
# scheduling delays) and below what a get that waited on Redis would take: the stall (STALL_MS) or the
# connect timeout (1 s).
LIMIT = 0.5
STALL_MS = 2000


class Clock:
    """The breakers' clock: it moves only when a test says, so no cooldown ends while a test counts."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> bytes:
    return i.to_bytes(32, "big")


async def timed_get(cache: PredictionCache, k: bytes) -> tuple[object, float]:
    started = time.perf_counter()
    hit = await cache.get(k)
    return hit, time.perf_counter() - started


async def redis_round_trip(cache: PredictionCache, k: bytes) -> bool:
    """A put, then a get that is answered by Redis (the cache has no L1)."""
    cache.put(k, b"round trip", 30)
    await cache.flush(2.0)
    hit = await cache.get(k)
    return hit is not None and hit.tier == "redis"


async def settle(cache: PredictionCache, k: bytes, clock: Clock) -> None:
    """A first round trip with Redis healthy. On a busy machine a get can outlive the 10 ms budget (a timeout,
    maybe an open breaker): try again, past the cooldown, until Redis answers; the breaker is then closed."""
    deadline = time.monotonic() + 10
    while not await redis_round_trip(cache, k):
        assert time.monotonic() < deadline, "Redis never answered within the budget while healthy"
        clock.now += 1.0
        await asyncio.sleep(0.05)


def test_redis_killed_then_restarted(own_redis: RedisServer) -> None:
    own_redis.start()
    own_redis.wait_ready()

    async def main() -> None:
        clock = Clock()
        breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=0.2, clock=clock)
        store = RedisStore(own_redis.url, get_timeout=GET_BUDGET, write_timeout=0.2, breaker=breaker)
        cache = PredictionCache(l1=None, redis=store)
        assert await cache.start()
        await settle(cache, key(1), clock)
        before = store.counters.redis_errors + store.counters.redis_timeouts

        own_redis.kill()
        for i in range(10):
            hit, elapsed = await timed_get(cache, key(1))
            assert hit is None
            assert elapsed < LIMIT, f"get {i} took {elapsed * 1000:.1f} ms with Redis down"
        assert breaker.state is BreakerState.OPEN
        assert store.counters.redis_errors + store.counters.redis_timeouts == before + 3

        # Open: calls do not even try the network (counted as bypassed, no new error or timeout).
        bypassed, failed = store.counters.redis_bypassed, store.counters.redis_errors + store.counters.redis_timeouts
        for _ in range(200):
            assert await cache.get(key(1)) is None
        assert store.counters.redis_bypassed == bypassed + 200
        assert store.counters.redis_errors + store.counters.redis_timeouts == failed
        # Writes are not even queued while it is open.
        assert cache.put(key(2), b"v", 30) is False and cache.pending_writes == 0

        own_redis.start()
        own_redis.wait_ready()
        deadline = time.monotonic() + 10
        clock.now += 1.0  # the cooldown is over: the next call is the half-open probe
        while not await redis_round_trip(cache, key(3)):
            assert time.monotonic() < deadline, "cache did not recover after Redis came back"
            clock.now += 1.0  # a failed probe re-opened it: let the next one through
            await asyncio.sleep(0.05)
        assert breaker.state is BreakerState.CLOSED
        await cache.close()

    asyncio.run(main())


def test_redis_never_started_is_a_fast_miss() -> None:
    async def main() -> None:
        store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", get_timeout=GET_BUDGET)
        cache = PredictionCache(l1=L1Cache(1 << 20), redis=store)
        assert not await cache.start()
        for _ in range(10):
            hit, elapsed = await timed_get(cache, key(1))
            assert hit is None and elapsed < LIMIT
        # L1 keeps working without Redis.
        assert cache.put(key(1), b"v", 30)
        hit, _ = await timed_get(cache, key(1))
        assert hit is not None
        await cache.close()

    asyncio.run(main())


def test_slow_redis_gets_return_within_budget(own_redis: RedisServer) -> None:
    own_redis.start()
    own_redis.wait_ready()

    async def main() -> None:
        clock = Clock()
        store = RedisStore(
            own_redis.url, get_timeout=GET_BUDGET, breaker=CircuitBreaker(5, cooldown_seconds=0.1, clock=clock)
        )
        cache = PredictionCache(l1=None, redis=store)
        admin = aioredis.Redis.from_url(own_redis.url)
        await settle(cache, key(1), clock)
        timeouts, bypassed = store.counters.redis_timeouts, store.counters.redis_bypassed
        # The server stops answering every client for STALL_MS (the OK comes back first).
        assert await admin.execute_command("CLIENT", "PAUSE", str(STALL_MS), "ALL")
        for i in range(20):
            hit, elapsed = await timed_get(cache, key(1))
            assert hit is None
            assert elapsed < LIMIT, f"get {i} took {elapsed * 1000:.1f} ms with Redis stalled"
        assert store.counters.redis_timeouts == timeouts + 5  # then the breaker opened: the other 15 never waited
        assert store.counters.redis_bypassed == bypassed + 15
        assert store.breaker.state is BreakerState.OPEN
        # Once the pause ends the same entry is served again.
        deadline = time.monotonic() + 5 + STALL_MS / 1000
        while (await cache.get(key(1))) is None:
            assert time.monotonic() < deadline, "no recovery after the pause"
            clock.now += 1.0  # past the cooldown: let a probe through
            await asyncio.sleep(0.02)
        await cache.close()
        await admin.aclose()

    asyncio.run(main())


def test_pending_writes_are_bounded_and_put_never_blocks(own_redis: RedisServer) -> None:
    own_redis.start()
    own_redis.wait_ready()

    async def main() -> None:
        # The write budget outlasts the pause, so the admitted writes land once it ends.
        store = RedisStore(own_redis.url, get_timeout=0.5, write_timeout=STALL_MS / 1000 + 5)
        cache = PredictionCache(l1=L1Cache(1 << 22), redis=store, max_pending_writes=8)
        admin = aioredis.Redis.from_url(own_redis.url)
        assert await cache.start()
        # Writes now wait in the server (for STALL_MS); reads still work.
        assert await admin.execute_command("CLIENT", "PAUSE", str(STALL_MS), "WRITE")
        payload = bytes(1000)
        slowest = 0.0
        for i in range(100):
            started = time.perf_counter()
            assert cache.put(key(i), payload, 30, 0.01)  # stored in L1 even when the write drops
            slowest = max(slowest, time.perf_counter() - started)
            if i == 49:
                await asyncio.sleep(0.05)  # let the first writes reach the paused server
                assert cache.pending_writes == 8
        # put() is not a coroutine, so it cannot wait on the stalled server; this shows it does not block on it
        # either (a blocking put would take the rest of the STALL_MS pause), with room for a loaded machine.
        assert slowest < LIMIT
        stats = cache.stats()
        assert (stats.pending_writes, stats.write_drops) == (8, 92)
        assert stats.l1_entries == 100
        # When Redis resumes exactly the admitted writes land.
        assert await cache.flush(STALL_MS / 1000 + 10)
        assert cache.stats().redis_writes == 8
        stored = [k for k in await admin.keys("*")]
        assert len(stored) == 8
        await cache.close()
        await admin.aclose()

    asyncio.run(main())


def test_close_waits_for_pending_writes(own_redis: RedisServer) -> None:
    own_redis.start()
    own_redis.wait_ready()

    async def main() -> None:
        cache = PredictionCache(l1=None, redis=RedisStore(own_redis.url, write_timeout=2.0))
        for i in range(20):
            cache.put(key(i), b"v", 30)
        await cache.close(timeout=2.0)
        assert cache.pending_writes == 0
        admin = aioredis.Redis.from_url(own_redis.url)
        assert len(await admin.keys("*")) == 20
        await admin.aclose()

    asyncio.run(main())
