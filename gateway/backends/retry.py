"""The one retry rule of the backends: a call that fails UNAVAILABLE is tried again while time is left.

UNAVAILABLE is what gRPC says when the function never saw the request or could not finish it for
reasons of its own (connection refused or reset, an instance draining, a revision swap), so trying
again, on another endpoint when there is one, is safe for inference. Every other status is the
function's answer and goes back to the caller.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

T = TypeVar("T")


def time_left(deadline: float) -> float:
    """Seconds to the caller's deadline (monotonic); a retry gets what is left, not a fresh timeout."""
    return max(0.0, deadline - time.monotonic())


def retryable(error: grpc.aio.AioRpcError, retries_done: int, retries: int, deadline: float) -> bool:
    return error.code() == grpc.StatusCode.UNAVAILABLE and retries_done < retries and deadline > time.monotonic()


async def call_with_retry(
    call: Callable[[int], Awaitable[T]],
    fail: Callable[[grpc.aio.AioRpcError, int], Exception],
    *,
    deadline: float,
    retries: int,
    on_retry: Callable[[grpc.aio.AioRpcError, int], None] | None = None,
) -> T:
    """Run call(attempt) for attempt 0, 1, ...: again after UNAVAILABLE, at most `retries` more times and
    only before `deadline`. Any other gRPC error, or the last one, is raised as fail(error, attempt).
    on_retry(error, attempt) runs before each retry (a backend marks the endpoint that failed)."""
    attempt = 0
    while True:
        try:
            return await call(attempt)
        except grpc.aio.AioRpcError as error:
            if not retryable(error, attempt, retries, deadline):
                raise fail(error, attempt) from None
            if on_retry is not None:
                on_retry(error, attempt)
            attempt += 1
