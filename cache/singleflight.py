"""Single-flight: concurrent misses for the same key run the function once and share its result.

Without it, a burst of identical requests that all miss would each call the
function (a thundering herd on the cold model). The shared call runs in its
own task, so a caller that is cancelled (client gone, deadline) leaves without
cancelling it for the others; only when every caller has left is it cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Call(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


class SingleFlight(Generic[T]):
    """`await flights.do(key, fn)` -> (result, shared). Exceptions reach every caller of that flight."""

    def __init__(self, *, cancel_when_abandoned: bool = True) -> None:
        self._calls: dict[Hashable, _Call[T]] = {}
        self._cancel_when_abandoned = cancel_when_abandoned

    def __len__(self) -> int:
        """Flights in progress."""
        return len(self._calls)

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        call = self._calls.get(key)
        # A finished flight whose cleanup has not run yet is not joined: its
        # result (or error) belongs to the callers that were already waiting.
        shared = call is not None and not call.task.done()
        if call is None or not shared:
            call = _Call(asyncio.get_running_loop().create_task(_run(fn)))
            self._calls[key] = call
            call.task.add_done_callback(lambda task: self._finished(key, task))
        assert call is not None
        call.waiters += 1
        try:
            # shield: cancelling this caller must not cancel the shared task.
            return await asyncio.shield(call.task), shared
        finally:
            call.waiters -= 1
            if call.waiters == 0 and not call.task.done() and self._cancel_when_abandoned:
                # Forget it first, so a caller arriving now starts afresh instead of joining a dying flight.
                if self._calls.get(key) is call:
                    del self._calls[key]
                call.task.cancel()

    def _finished(self, key: Hashable, task: asyncio.Task[T]) -> None:
        current = self._calls.get(key)
        if current is not None and current.task is task:
            del self._calls[key]
        # Mark the exception retrieved: if every caller left, nobody else will.
        if not task.cancelled():
            task.exception()


async def _run(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()
