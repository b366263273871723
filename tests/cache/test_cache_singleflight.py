"""Single-flight: one call per key at a time, shared by every concurrent caller."""

from __future__ import annotations

import asyncio

import pytest

from cache.singleflight import SingleFlight


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
