"""Single-flight: one call per key at a time, shared by every concurrent caller."""

from __future__ import annotations

import asyncio

import pytest

from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.redis_store import RedisStore
from edgeinfer.cache.singleflight import SingleFlight


def test_concurrent_identical_calls_run_once() -> None:
    async def main() -> None:
        flights: SingleFlight[str] = SingleFlight()
        calls = 0
        gate = asyncio.Event()

        async def fn() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "result"

        tasks = [asyncio.create_task(flights.do("k", fn)) for _ in range(100)]
        await asyncio.sleep(0)
        assert len(flights) == 1
        gate.set()
        results = await asyncio.gather(*tasks)
        assert calls == 1
        assert all(r == "result" for r, _ in results)
        assert sum(1 for _, shared in results if not shared) == 1
        assert len(flights) == 0
        # The key is free again: the next call runs fn anew.
        assert await flights.do("k", fn) == ("result", False)
        assert calls == 2

    asyncio.run(main())


def test_different_keys_do_not_share() -> None:
    async def main() -> None:
        flights: SingleFlight[int] = SingleFlight()

        async def fn(v: int) -> int:
            await asyncio.sleep(0.01)
            return v

        results = await asyncio.gather(*(flights.do(i, lambda i=i: fn(i)) for i in range(10)))  # type: ignore[misc]
        assert results == [(i, False) for i in range(10)]

    asyncio.run(main())


def test_exception_reaches_every_waiter() -> None:
    async def main() -> None:
        flights: SingleFlight[str] = SingleFlight()
        calls = 0

        async def fn() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            raise ValueError("model failed")

        results = await asyncio.gather(*(flights.do("k", fn) for _ in range(20)), return_exceptions=True)
        assert calls == 1
        assert all(isinstance(r, ValueError) for r in results)
        assert len(flights) == 0
        with pytest.raises(ValueError):
            await flights.do("k", fn)
        assert calls == 2

    asyncio.run(main())


def test_cancelling_one_waiter_does_not_cancel_the_others() -> None:
    async def main() -> None:
        flights: SingleFlight[str] = SingleFlight()
        gate = asyncio.Event()
        calls = 0

        async def fn() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "ok"

        leader = asyncio.create_task(flights.do("k", fn))
        followers = [asyncio.create_task(flights.do("k", fn)) for _ in range(5)]
        await asyncio.sleep(0)
        leader.cancel()
        followers[0].cancel()
        await asyncio.sleep(0)
        gate.set()
        assert [await f for f in followers[1:]] == [("ok", True)] * 4
        assert leader.cancelled() and followers[0].cancelled()
        assert calls == 1

    asyncio.run(main())


def test_call_is_cancelled_when_every_waiter_leaves() -> None:
    async def main() -> None:
        flights: SingleFlight[str] = SingleFlight()
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def fn() -> str:
            started.set()
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        waiter = asyncio.create_task(flights.do("k", fn))
        await started.wait()
        waiter.cancel()
        await asyncio.wait_for(cancelled.wait(), 1)
        assert len(flights) == 0
        # A newcomer starts a fresh call instead of joining the dying one.
        assert await flights.do("k", _value) == ("fresh", False)

    asyncio.run(main())


async def _value() -> str:
    return "fresh"


def test_a_flight_that_lands_while_redis_answers_is_seen_in_l1(redis_server: RedisServer) -> None:
    """The race behind a second function call: L1 empty, the real Redis still to say "miss", and meanwhile an
    identical request's flight stores its answer in L1. The lookup must return that answer, not a miss."""

    async def scenario() -> None:
        store = RedisStore(redis_server.url, key_prefix="race-test:")
        cache = PredictionCache(l1=L1Cache(1 << 20), redis=store)
        assert await cache.start()
        key = b"k" * 32

        async def other_flight_lands() -> None:
            await asyncio.sleep(0)  # while the lookup below waits on Redis
            assert cache.l1 is not None
            cache.l1.put(key, b"answer", 60.0, 0.0)

        hit, _ = await asyncio.gather(cache.get(key), other_flight_lands())
        assert hit is not None and hit.payload == b"answer" and hit.tier == "l1"
        await cache.close()

    asyncio.run(scenario())
