"""The backends' one retry rule (gateway/backends/retry.py), and the static and Knative backends' use of it (a
Knative tagged version's route included), in-process."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from edgeinfer.gateway.backends.base import BackendError, FunctionEndpoint, Metadata
from edgeinfer.gateway.backends.knative import KnativeBackend, knative_routes
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
        return await static_backend(a, b).infer("m", "", b"", 30.0, ())

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
            await static_backend(only).infer("m", "", b"", 30.0, ())
        return caught.value

    error = asyncio.run(main())
    assert error.code == U and "only:1" in error.message
    assert len(only.timeouts) == 2  # one endpoint: the retry goes to it again, once


async def knative_backend(main: FakeEndpoint, candidate: FakeEndpoint) -> KnativeBackend:
    """A Knative backend whose version 2 is tagged `candidate`, its endpoints replaced by scripted ones."""
    backend = KnativeBackend(knative_routes({"m": "m"}, "models"))
    backend.set_tags("m", {"2": "candidate"})
    route, real = backend._tagged[("m", "candidate")]
    await real.close()
    await backend._endpoints["m"].close()
    backend._endpoints["m"] = main
    backend._tagged[("m", "candidate")] = (route, candidate)
    return backend


def test_knative_backend_retries_a_tagged_version_once_on_its_tag_route() -> None:
    order: list[str] = []
    main = FakeEndpoint("main:80", [OK, OK], order)
    candidate = FakeEndpoint("candidate:80", [U, OK, U, U], order)

    async def main_calls() -> tuple[list[bytes], BackendError]:
        backend = await knative_backend(main, candidate)
        served = [
            await backend.infer("m", "2", b"", 30.0, ()),  # UNAVAILABLE, then answered on the same route
            await backend.infer("m", "1", b"", 30.0, ()),  # untagged: the main route
            await backend.infer("m", "", b"", 30.0, ()),  # the default version: the main route
        ]
        with pytest.raises(BackendError) as caught:
            await backend.infer("m", "2", b"", 30.0, ())  # UNAVAILABLE twice: one retry only
        return served, caught.value

    served, error = asyncio.run(main_calls())
    assert served == [b"candidate:80", b"main:80", b"main:80"]
    assert order == ["candidate:80", "candidate:80", "main:80", "main:80", "candidate:80", "candidate:80"]
    assert error.code == U and "tag 'candidate'" in error.message and "candidate-m.models.svc" in error.message
