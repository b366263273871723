"""The backends' one retry rule (gateway/backends/retry.py), and the static backend's use of it, in-process."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from edgeinfer.gateway.backends.base import BackendError, FunctionEndpoint, Metadata
from edgeinfer.gateway.backends.retry import call_with_retry, time_left
from edgeinfer.gateway.backends.static import StaticBackend


def rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


def fail(error: grpc.aio.AioRpcError, attempt: int) -> Exception:
    return BackendError(error.code(), f"attempt {attempt}: {error.details()}")


def run_calls(
    codes: list[grpc.StatusCode | None], retries: int, deadline: float | None = None
) -> tuple[list[int], str]:
    """Attempt i fails with codes[i] (None: succeeds); returns the attempts made and the result or error."""
    attempts: list[int] = []
    retried: list[int] = []

    async def call(attempt: int) -> str:
        attempts.append(attempt)
        code = codes[attempt]
        if code is not None:
            raise rpc_error(code, code.name)
        return "ok"

    async def main() -> str:
        try:
            return await call_with_retry(
                call,
                fail,
                deadline=time.monotonic() + 60 if deadline is None else deadline,
                retries=retries,
                on_retry=lambda _, attempt: retried.append(attempt),
            )
        except BackendError as exc:
            return f"{exc.code.name} ({exc.message})"

    result = asyncio.run(main())
    assert retried == attempts[:-1]  # on_retry ran before every retry, and only then
    return attempts, result


U, OK = grpc.StatusCode.UNAVAILABLE, None


def test_unavailable_is_retried_up_to_the_limit() -> None:
    assert run_calls([U, OK], retries=1) == ([0, 1], "ok")
    assert run_calls([U, U, U, OK], retries=3) == ([0, 1, 2, 3], "ok")
    assert run_calls([U, U, OK], retries=1) == ([0, 1], "UNAVAILABLE (attempt 1: UNAVAILABLE)")


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INTERNAL,
    ],
)
def test_other_statuses_are_the_functions_answer_and_not_retried(code: grpc.StatusCode) -> None:
    assert run_calls([code, OK], retries=3) == ([0], f"{code.name} (attempt 0: {code.name})")


def test_no_retry_once_the_deadline_has_passed() -> None:
    assert run_calls([U, OK], retries=3, deadline=time.monotonic() - 1) == ([0], "UNAVAILABLE (attempt 0: UNAVAILABLE)")
    assert time_left(time.monotonic() - 1) == 0.0
    assert 50 < time_left(time.monotonic() + 60) <= 60


class FakeEndpoint(FunctionEndpoint):
    """A FunctionEndpoint that answers from a script (shared by the endpoints, in call order), not a channel."""

    def __init__(self, address: str, script: list[grpc.StatusCode | None], order: list[str] | None = None) -> None:
        self.address = address
        self.outstanding = 0
        self.script = script
        self.order = order if order is not None else []
        self.timeouts: list[float] = []

    async def infer(self, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        self.timeouts.append(timeout)
        self.order.append(self.address)
        code = self.script.pop(0)
        if code is not None:
            raise rpc_error(code, "scripted")
        return self.address.encode()

    async def close(self) -> None:
        return None


def static_backend(*endpoints: FakeEndpoint) -> StaticBackend:
    backend = StaticBackend({})
    backend._routes["m"] = list(endpoints)
    return backend


def test_static_backend_retries_once_on_the_other_endpoint_with_what_is_left_of_the_deadline() -> None:
    script: list[grpc.StatusCode | None] = [U, OK]
    order: list[str] = []
    a, b = FakeEndpoint("a:1", script, order), FakeEndpoint("b:1", script, order)

    async def main() -> bytes:
        return await static_backend(a, b).infer("m", b"", 30.0, ())

    served = asyncio.run(main())
    assert sorted(order) == ["a:1", "b:1"]  # the retry went to the other endpoint
    assert served == order[1].encode()  # which answered
    first, second = (a.timeouts if order[0] == "a:1" else b.timeouts) + (
        b.timeouts if order[0] == "a:1" else a.timeouts
    )
    assert 0 < second <= first <= 30.0  # the retry got what was left, not a fresh 30 s


def test_static_backend_names_the_endpoint_that_failed_last() -> None:
    only = FakeEndpoint("only:1", [U, U, OK])

    async def main() -> BackendError:
        with pytest.raises(BackendError) as caught:
            await static_backend(only).infer("m", b"", 30.0, ())
        return caught.value

    error = asyncio.run(main())
    assert error.code == U and "only:1" in error.message
    assert len(only.timeouts) == 2  # one endpoint: the retry goes to it again, once
