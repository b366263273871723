"""How a servicer's error becomes the call's end (edgeinfer/serving.py `ErrorMapping.wrap`, which the function's and
the gateway's servicers are registered with).

The gRPC context is recorded rather than real here: the interesting cases are the order of events around
an abort, which a real server only shows by chance (a deadline passing during the abort). The end-to-end
status codes are tested against real processes in test_function_errors.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from edgeinfer.functions.servicer import ERRORS
from edgeinfer.protocol.errors import DeadlineExceeded, ResourceExhausted


class AbortError(Exception):
    """Stands for grpc.aio's AbortError: abort() sends the status, then raises."""


class RecordingContext:
    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.aborts: list[tuple[grpc.StatusCode, str]] = []

    def time_remaining(self) -> float | None:
        return self.remaining

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborts.append((code, details))
        raise AbortError


def failing(error: Exception) -> Any:
    async def method(request: Any, context: Any) -> Any:
        raise error

    return ERRORS.wrap(method)


def test_error_is_answered_with_its_code_and_without_the_handled_exception_chained() -> None:
    context = RecordingContext(remaining=0.08)
    with pytest.raises(AbortError) as info:
        asyncio.run(failing(ResourceExhausted("model 'ranker': queue is full"))(None, context))
    assert context.aborts == [(grpc.StatusCode.RESOURCE_EXHAUSTED, "model 'ranker': queue is full")]
    # Not raised while handling the data plane's error: its traceback (every frame down to the batcher) stays
    # out of the abort's, so a rejection leaves less garbage behind.
    assert info.value.__context__ is None


def test_no_deadline_still_answers() -> None:
    context = RecordingContext(remaining=None)
    with pytest.raises(AbortError):
        asyncio.run(failing(DeadlineExceeded("no result within 10000 ms"))(None, context))
    assert [code for code, _ in context.aborts] == [grpc.StatusCode.DEADLINE_EXCEEDED]


@pytest.mark.parametrize("remaining", [0.0, 0.0004])
def test_passed_deadline_cancels_instead_of_answering(remaining: float) -> None:
    """gRPC already ends such a call with DEADLINE_EXCEEDED; an abort would fail and log a traceback."""
    context = RecordingContext(remaining=remaining)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(failing(DeadlineExceeded("no result within 100 ms"))(None, context))
    assert context.aborts == []
