"""The Redis store and the two-tier prediction cache against a real valkey/redis server."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from edgeinfer.cache.entry import encode_entry
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.redis_store import RedisStore, redact_url

# Generous budgets: these tests check behaviour, not latency, on a busy 2-core machine.
GET_BUDGET = 0.5
KEY = bytes(range(32))


def store_for(url: str, prefix: str, **options: float) -> RedisStore:
    return RedisStore(url, key_prefix=prefix, get_timeout=GET_BUDGET, write_timeout=1.0, **options)  # type: ignore[arg-type]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_store_miss_hit_prefix_and_ttl(redis_server: RedisServer, key_prefix: str) -> None:
    async def main() -> None:
        store = store_for(redis_server.url, key_prefix)
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await store.get(KEY) is None
            assert await store.set(KEY, encode_entry(b"response", 1.0, 0.25), 60)
            found = await store.get(KEY)
            assert found is not None
            assert found.entry.payload == b"response" and found.entry.compute_seconds == 0.25
            # The TTL set (in seconds, not ms), less what passed since: 30 s of slack for a loaded machine.
            assert found.ttl_seconds is not None and 30 < found.ttl_seconds <= 60
            # Stored under the prefix, with a TTL (PX) always.
            name = key_prefix.encode() + KEY.hex().encode()
            assert await admin.keys(key_prefix + "*") == [name]
            assert 59_000 < await admin.pttl(name) <= 60_000
            # A short TTL really expires in Redis.
            assert await store.set(KEY, encode_entry(b"short", 1.0, 0.0), 0.2)
            await eventually(lambda: _gone(admin, name))
            assert await store.get(KEY) is None
        finally:
            await store.close()
            await admin.aclose()

    asyncio.run(main())


async def _gone(admin: aioredis.Redis, name: bytes) -> bool:
    return await admin.exists(name) == 0


def test_corrupt_value_is_a_miss_and_deleted(redis_server: RedisServer, key_prefix: str) -> None:
    async def main() -> None:
        store = store_for(redis_server.url, key_prefix)
        cache = PredictionCache(l1=L1Cache(1 << 20), redis=store)
        admin = aioredis.Redis.from_url(redis_server.url)
        name = store.redis_key(KEY)
        try:
            good = encode_entry(b"payload", 1.0, 0.0)
            for bad in (b"not an entry", good[:-1], good[:20] + bytes([good[20] ^ 1]) + good[21:]):
                await admin.set(name, bad, px=60_000)
                assert await cache.get(KEY) is None
                await eventually(lambda: _gone(admin, name))
            assert cache.stats().corrupt_entries == 3
            assert cache.stats().misses == 3
        finally:
            await cache.close()
            await admin.aclose()

    asyncio.run(main())


def test_cache_tiers_and_promotion(redis_server: RedisServer, key_prefix: str) -> None:
    async def main() -> None:
        store = store_for(redis_server.url, key_prefix)
        cache = PredictionCache(l1=L1Cache(1 << 20), redis=store)
        assert await cache.start()
        try:
            assert await cache.get(KEY) is None
            assert cache.put(KEY, b"response", 30, 0.01)
            hit = await cache.get(KEY)
            assert hit is not None and (hit.payload, hit.tier) == (b"response", "l1")
            await cache.flush()
            # Another gateway instance: empty L1, same Redis.
            other = PredictionCache(l1=L1Cache(1 << 20), redis=store_for(redis_server.url, key_prefix))
            hit = await other.get(KEY)
            assert hit is not None and (hit.payload, hit.tier) == (b"response", "redis")
            assert 15 < hit.ttl_seconds <= 30  # what Redis had left of the 30 s (slack for a loaded machine)
            # Promoted: the next read is local, with the TTL Redis had left.
            hit = await other.get(KEY)
            assert hit is not None and hit.tier == "l1" and hit.ttl_seconds <= 30
            stats = other.stats()
            assert (stats.hits_redis, stats.hits_l1, stats.misses, stats.l1_entries) == (1, 1, 0, 1)
            assert stats.l1_bytes > len(b"response")
            await other.close()
            assert cache.stats().redis_writes == 1
        finally:
            await cache.close()

    asyncio.run(main())


def test_a_burst_shares_a_small_pool(redis_server: RedisServer, key_prefix: str) -> None:
    async def main() -> None:
        store = store_for(redis_server.url, key_prefix, max_connections=4)
        cache = PredictionCache(l1=None, redis=store)
        try:
            assert await cache.start()
            cache.put(KEY, b"popular", 30)
            assert await cache.flush(2.0)
            hits = await asyncio.gather(*(cache.get(KEY) for _ in range(200)))
            assert all(h is not None and h.payload == b"popular" for h in hits)
            stats = cache.stats()
            assert stats.hits_redis == 200 and stats.redis_timeouts == 0
            assert 1 <= stats.redis_connections <= 4
        finally:
            await cache.close()

    asyncio.run(main())


def test_too_large_responses_are_not_stored(redis_server: RedisServer, key_prefix: str) -> None:
    async def main() -> None:
        cache = PredictionCache(l1=L1Cache(1 << 20), redis=store_for(redis_server.url, key_prefix),
                                max_entry_bytes=100)
        try:
            assert not cache.put(KEY, bytes(101), 30)
            assert cache.pending_writes == 0
            assert await cache.get(KEY) is None
            assert cache.stats().too_large == 1
            assert cache.put(KEY, bytes(100), 30)
        finally:
            await cache.close()

    asyncio.run(main())


def test_put_never_raises() -> None:
    cache = PredictionCache(l1=L1Cache(1 << 20))
    assert not cache.put(KEY, None, 30)  # type: ignore[arg-type]
    assert not cache.put(KEY, b"x", float("nan"))
    assert not cache.put(KEY, b"x", -1)
    assert cache.stats().internal_errors == 1
    # Outside an event loop the Redis write is skipped (counted), L1 still works.
    with_redis = PredictionCache(l1=L1Cache(1 << 20), redis=RedisStore("redis://127.0.0.1:1/0"))
    assert with_redis.put(KEY, b"x", 30)
    assert with_redis.stats().write_drops == 1


def test_xfetch_early_refresh() -> None:
    now = [0.0]
    draws = [0.0]

    async def main() -> None:
        l1 = L1Cache(1 << 20, clock=lambda: now[0])
        cache = PredictionCache(l1=l1, xfetch_beta=1.0, rand=lambda: draws[0])
        cache.put(KEY, b"v", 10.0, compute_seconds=1.0)
        # Far from expiry nothing triggers, even for an unlucky draw: -ln(1 - 0.99) = 4.6 < 10.
        draws[0] = 0.99
        hit = await cache.get(KEY)
        assert hit is not None and not hit.refresh
        # 3 s left: the same draw (delta * beta * 4.6 >= 3) asks for a refresh, a typical one does not.
        now[0] = 7.0
        hit = await cache.get(KEY)
        assert hit is not None and hit.refresh
        draws[0] = 0.5
        hit = await cache.get(KEY)
        assert hit is not None and not hit.refresh
        assert cache.stats().refreshes_suggested == 1
        # beta = 0 disables it; so does an unknown compute time.
        off = PredictionCache(l1=L1Cache(1 << 20, clock=lambda: now[0]), xfetch_beta=0, rand=lambda: 0.999999)
        off.put(KEY, b"v", 3.5, 1.0)
        hit = await off.get(KEY)
        assert hit is not None and not hit.refresh
        unknown = PredictionCache(l1=L1Cache(1 << 20, clock=lambda: now[0]), rand=lambda: 0.999999)
        unknown.put(KEY, b"v", 0.01, 0.0)
        hit = await unknown.get(KEY)
        assert hit is not None and not hit.refresh

    asyncio.run(main())


def test_xfetch_rate_rises_towards_expiry() -> None:
    async def main() -> None:
        now = [0.0]
        cache = PredictionCache(l1=L1Cache(1 << 20, clock=lambda: now[0]), xfetch_beta=1.0)
        cache.put(KEY, b"v", 10.0, compute_seconds=1.0)
        rates = []
        for t in (0.0, 8.0, 9.5):
            now[0] = t
            hits = [await cache.get(KEY) for _ in range(2000)]
            rates.append(sum(1 for h in hits if h is not None and h.refresh) / 2000)
        # P(refresh) = exp(-remaining / (delta * beta)): ~0, ~0.14, ~0.61.
        assert rates[0] < 0.01 and 0.08 < rates[1] < 0.2 and 0.5 < rates[2] < 0.72

    asyncio.run(main())


def test_auth_with_password(own_redis: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    own_redis.password = "s3cret:p@ss/word"
    own_redis.start()
    own_redis.wait_ready()
    assert "s3cret" not in own_redis.safe_url and "s3cret" not in repr(own_redis)

    async def main() -> None:
        good = PredictionCache(l1=None, redis=store_for(own_redis.url, "auth:"))
        assert await good.start()
        good.put(KEY, b"secret response", 30)
        await good.flush()
        assert (await good.get(KEY)) is not None
        await good.close()
        wrong_url = own_redis.url.replace("s3cret", "wrong")
        for url in (wrong_url, f"redis://127.0.0.1:{own_redis.port}/0"):
            store = store_for(url, "auth:")
            bad = PredictionCache(l1=None, redis=store)
            assert await bad.get(KEY) is None  # a miss, not an exception
            assert bad.stats().redis_errors == 1
            await bad.close()
        # Enough failures to open the breaker and log it: the password never appears.
        store = store_for(wrong_url, "auth:")
        for _ in range(store.breaker.failure_threshold + 1):
            assert await store.get(KEY) is None
        assert store.breaker.state.value == "open"
        assert "s3cret" not in repr(store) and "wrong" not in repr(store)
        await store.close()

    with caplog.at_level(logging.DEBUG, logger="edgeinfer.cache"):
        asyncio.run(main())
    assert "unavailable" in caplog.text
    assert "s3cret" not in caplog.text and ":wrong@" not in caplog.text


def test_redact_url() -> None:
    assert redact_url("redis://:hunter2@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("rediss://user:hunter2@cache:6380/1") == "rediss://user:***@cache:6380/1"
    assert redact_url("redis://cache:6379/0") == "redis://cache:6379/0"
    assert "hunter2" not in redact_url("redis://cache:6379/0?password=hunter2&db=1")
