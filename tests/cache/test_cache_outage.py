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
LIMIT = 0.05  # every get must return within this, whatever Redis does


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


def test_redis_killed_then_restarted(own_redis: RedisServer) -> None:
    own_redis.start()
    own_redis.wait_ready()

    async def main() -> None:
        breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=0.2)
        store = RedisStore(own_redis.url, get_timeout=GET_BUDGET, write_timeout=0.2, breaker=breaker)
        cache = PredictionCache(l1=None, redis=store)
        assert await cache.start()
        assert await redis_round_trip(cache, key(1))

        own_redis.kill()
        for i in range(10):
            hit, elapsed = await timed_get(cache, key(1))
            assert hit is None
            assert elapsed < LIMIT, f"get {i} took {elapsed * 1000:.1f} ms with Redis down"
        assert breaker.state is BreakerState.OPEN
        assert store.counters.redis_errors + store.counters.redis_timeouts == 3

        # Open: calls do not even try the network.
        bypassed = store.counters.redis_bypassed
        started = time.perf_counter()
        for _ in range(200):
            assert await cache.get(key(1)) is None
        assert (time.perf_counter() - started) / 200 < 0.001
        assert store.counters.redis_bypassed == bypassed + 200
        # Writes are not even queued while it is open.
        assert cache.put(key(2), b"v", 30) is False and cache.pending_writes == 0

        own_redis.start()
        own_redis.wait_ready()
        deadline = time.monotonic() + 10
        while not await redis_round_trip(cache, key(3)):
            assert time.monotonic() < deadline, "cache did not recover after Redis came back"
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
        store = RedisStore(own_redis.url, get_timeout=GET_BUDGET, breaker=CircuitBreaker(5, cooldown_seconds=0.1))
        cache = PredictionCache(l1=None, redis=store)
        admin = aioredis.Redis.from_url(own_redis.url)
        assert await redis_round_trip(cache, key(1))
        # The server stops answering every client for 500 ms (the OK comes back first).
        assert await admin.execute_command("CLIENT", "PAUSE", "500", "ALL")
        for i in range(20):
            hit, elapsed = await timed_get(cache, key(1))
            assert hit is None
            assert elapsed < LIMIT, f"get {i} took {elapsed * 1000:.1f} ms with Redis stalled"
        assert store.counters.redis_timeouts == 5
        assert store.breaker.state is BreakerState.OPEN
        # Once the pause ends the same entry is served again.
        deadline = time.monotonic() + 5
        while (await cache.get(key(1))) is None:
            assert time.monotonic() < deadline, "no recovery after the pause"
            await asyncio.sleep(0.02)
        await cache.close()
        await admin.aclose()

    asyncio.run(main())


def test_pending_writes_are_bounded_and_put_never_blocks(own_redis: RedisServer) -> None:
    own_redis.start()
    own_redis.wait_ready()

    async def main() -> None:
        store = RedisStore(own_redis.url, get_timeout=0.5, write_timeout=3.0)
        cache = PredictionCache(l1=L1Cache(1 << 22), redis=store, max_pending_writes=8)
        admin = aioredis.Redis.from_url(own_redis.url)
        assert await cache.start()
        # Writes now wait in the server; reads still work.
        assert await admin.execute_command("CLIENT", "PAUSE", "700", "WRITE")
        payload = bytes(1000)
        slowest = 0.0
        for i in range(100):
            started = time.perf_counter()
            assert cache.put(key(i), payload, 30, 0.01)  # stored in L1 even when the write drops
            slowest = max(slowest, time.perf_counter() - started)
            if i == 49:
                await asyncio.sleep(0.05)  # let the first writes reach the paused server
                assert cache.pending_writes == 8
        assert slowest < 0.005
        stats = cache.stats()
        assert (stats.pending_writes, stats.write_drops) == (8, 92)
        assert stats.l1_entries == 100
        # When Redis resumes exactly the admitted writes land.
        assert await cache.flush(5.0)
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
