"""The gateway's data plane in-process, with a fake Backend: no processes, no sockets (but one Redis test).

What the end-to-end tests (test_gateway_cache.py, test_gateway_routing.py) show through real functions,
shown here on the mechanism itself: cache statuses, single-flight, version resolution, the deadline
passed to the backend, and which error class each backend failure becomes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from edgeinfer.cache.key import cache_key, key_parts_from_request
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.redis_store import RedisStore
from edgeinfer.cache.singleflight import SingleFlight
from edgeinfer.gateway.backends.base import BackendError, Metadata
from edgeinfer.gateway.dataplane import CACHE_STATUS_PARAMETER, GatewayDataPlane, InferOutcome
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import (
    DeadlineExceeded,
    InferenceError,
    InvalidArgument,
    ModelNotFound,
    ResourceExhausted,
    Unavailable,
)
from edgeinfer.protocol.tensors import (
    Array,
    TensorSpec,
    build_request,
    decode_inputs,
    encode_outputs,
    output_arrays,
)
from edgeinfer.protocol.tracing import Tracing

MODEL = "double"
X = np.arange(8, dtype=np.float32).reshape(2, 4)


@dataclass
class Call:
    version: str
    timeout: float
    request_id: str


@dataclass
class FakeBackend:
    """One model, `double` (y = 2x), with the versions and timeout_ms its metadata claims.

    `gate`, when set, holds every infer until it is set; `fail` makes infer raise instead of answering.
    """

    versions: tuple[str, ...] = ("1",)
    timeout_ms: int | None = 2000
    gate: asyncio.Event | None = None
    fail: BaseException | None = None
    metadata_fail: BaseException | None = None
    calls: list[Call] = field(default_factory=list)
    metadata_calls: int = 0

    def models(self) -> list[str]:
        return [MODEL]

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        parsed = pb.ModelInferRequest.FromString(request)
        self.calls.append(Call(parsed.model_version, timeout, parsed.id))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        if model != MODEL:
            raise BackendError(grpc.StatusCode.NOT_FOUND, f"no model {model}")
        inputs, _ = decode_inputs(parsed, {"x": TensorSpec("x", "FP32", (-1, 4))})
        reply = pb.ModelInferResponse(model_name=model, model_version=parsed.model_version)
        outputs: list[tuple[str, Array]] = [("y", inputs["x"] * 2)]
        encode_outputs(reply, outputs, raw=True)
        return reply.SerializeToString()

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        self.metadata_calls += 1
        if self.metadata_fail is not None:
            raise self.metadata_fail
        if model != MODEL:
            raise ModelNotFound(f"unknown model '{model}'")
        metadata = pb.ModelMetadataResponse(
            name=MODEL,
            versions=list(self.versions),
            platform="onnxruntime_onnx",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="x", datatype="FP32", shape=[-1, 4])],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name="y", datatype="FP32", shape=[-1, 4])],
        )
        metadata.properties["max_batch_size"].string_param = "8"
        metadata.properties["cache_enabled"].string_param = "true"
        metadata.properties["cache_ttl_seconds"].double_param = 300.0
        if self.timeout_ms is not None:
            metadata.properties["timeout_ms"].int64_param = self.timeout_ms
        return metadata

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return model == MODEL

    async def close(self) -> None:
        return None


def key(request: pb.ModelInferRequest, decoded: dict[str, Array], tenant: str, version: str) -> bytes:
    # The gateway's key function (gateway/server.py build_cache).
    return cache_key(key_parts_from_request(request, decoded, tenant=tenant, version=version))


def plane(backend: FakeBackend, cache: PredictionCache | None = None, **options: Any) -> GatewayDataPlane:
    if cache is None:
        cache = PredictionCache(l1=L1Cache(1 << 20))
    return GatewayDataPlane(
        backend,
        GatewayMetrics("test"),
        Tracing(),
        cache=cache,
        flights=SingleFlight[bytes](),
        key_function=key,
        default_timeout_seconds=7.0,
        **options,
    )


def request(version: str = "", request_id: str = "", cache: bool = True, raw: bool = True) -> pb.ModelInferRequest:
    req = build_request(MODEL, {"x": X}, version=version, request_id=request_id, raw=raw)
    if not cache:
        req.parameters["cache"].bool_param = False
    return req


def reply_of(outcome: InferOutcome) -> pb.ModelInferResponse:
    return pb.ModelInferResponse.FromString(outcome.payload)


def function_calls(dp: GatewayDataPlane, code: str, version: str = "1") -> float:
    return dp.metrics.function_calls.labels("test", MODEL, version, code).value


def requests_counted(dp: GatewayDataPlane, code: str, cache: str, version: str = "1") -> float:
    return dp.metrics.requests.labels("test", MODEL, version, code, cache).value


# -- cache statuses ------------------------------------------------------------------------------


def test_miss_then_l1_hit_and_the_reply_carries_status_and_caller_id() -> None:
    backend = FakeBackend()

    async def run() -> tuple[InferOutcome, InferOutcome]:
        dp = plane(backend)
        first = await dp.infer(request(request_id="a"))
        second = await dp.infer(request(request_id="b"))
        await dp.close()
        return first, second

    first, second = asyncio.run(run())
    assert (first.cache, second.cache) == ("miss", "hit-l1")
    assert len(backend.calls) == 1
    # The function never sees the caller's id (so replies can be shared); each caller gets its own back.
    assert backend.calls[0].request_id == ""
    for outcome, rid in ((first, "a"), (second, "b")):
        reply = reply_of(outcome)
        assert reply.id == rid
        assert reply.parameters[CACHE_STATUS_PARAMETER].string_param == outcome.cache
        np.testing.assert_array_equal(output_arrays(reply)["y"], X * 2)


def test_typed_request_gets_a_typed_reply_from_the_same_cache_entry() -> None:
    backend = FakeBackend()

    async def run() -> tuple[InferOutcome, InferOutcome]:
        dp = plane(backend)
        return await dp.infer(request(raw=True)), await dp.infer(request(raw=False))

    raw, typed = asyncio.run(run())
    assert (raw.cache, typed.cache) == ("miss", "hit-l1")  # raw and typed contents give one key
    reply = reply_of(typed)
    assert not reply.raw_output_contents and reply.outputs[0].contents.fp32_contents
    np.testing.assert_array_equal(output_arrays(reply)["y"], X * 2)


def test_bypass_when_the_client_opts_out_or_no_cache_is_configured() -> None:
    backend = FakeBackend()

    async def run() -> list[str]:
        dp = plane(backend)
        statuses = [(await dp.infer(request(cache=False))).cache for _ in range(2)]
        bare = GatewayDataPlane(backend, GatewayMetrics("test"), Tracing())
        statuses += [(await bare.infer(request())).cache for _ in range(2)]
        return statuses

    assert asyncio.run(run()) == ["bypass"] * 4
    assert len(backend.calls) == 4  # nothing served from a cache


def test_metrics_count_each_request_by_status() -> None:
    backend = FakeBackend()

    async def run() -> GatewayDataPlane:
        dp = plane(backend)
        await dp.infer(request())
        await dp.infer(request())
        await dp.infer(request(cache=False))
        return dp

    dp = asyncio.run(run())
    assert [requests_counted(dp, "OK", s) for s in ("miss", "hit-l1", "bypass")] == [1, 1, 1]
    assert function_calls(dp, "OK") == 2


def test_redis_hit_from_another_gateways_write(redis_server: RedisServer, tmp_path: Path) -> None:
    """Gateway A misses and writes through to Redis; gateway B (its own empty L1) gets a Redis hit, then L1."""
    prefix = f"dataplane:{tmp_path.name}:"
    backend = FakeBackend()

    async def run() -> list[str]:
        # Budgets far above a loaded machine's Redis round trip: a timeout would read as a miss.
        store_a, store_b = (RedisStore(redis_server.url, key_prefix=prefix, get_timeout=5.0) for _ in range(2))
        cache_a = PredictionCache(l1=L1Cache(1 << 20), redis=store_a)
        cache_b = PredictionCache(l1=L1Cache(1 << 20), redis=store_b)
        assert await cache_a.start() and await cache_b.start()
        a, b = plane(backend, cache_a), plane(backend, cache_b)
        statuses = [(await a.infer(request())).cache]
        # The write is in the background: wait for it (no sleep guess), bounded by the pytest timeout.
        while cache_a.pending_writes or cache_a.stats().redis_writes == 0:
            await asyncio.sleep(0.01)
        statuses += [(await b.infer(request())).cache, (await b.infer(request())).cache]
        for store in (store_a, store_b):
            await store.close()
        return statuses

    assert asyncio.run(run()) == ["miss", "hit-redis", "hit-l1"]
    assert len(backend.calls) == 1


# -- single-flight -------------------------------------------------------------------------------


def test_concurrent_identical_misses_make_one_backend_call() -> None:
    backend = FakeBackend(gate=asyncio.Event())
    n = 20

    async def run() -> list[InferOutcome]:
        dp = plane(backend)
        await dp.model(MODEL)  # metadata first, so every request reaches the cache lookup
        tasks = [asyncio.ensure_future(dp.infer(request(request_id=str(i)))) for i in range(n)]
        while not backend.calls:  # the first has reached the backend; let the others queue behind it
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)
        assert backend.gate is not None
        backend.gate.set()
        return await asyncio.gather(*tasks)

    outcomes = asyncio.run(run())
    assert len(backend.calls) == 1
    assert sorted(o.cache for o in outcomes) == ["coalesced"] * (n - 1) + ["miss"]
    assert sorted(reply_of(o).id for o in outcomes) == sorted(str(i) for i in range(n))


def test_a_failed_flight_fails_every_waiter_and_the_next_request_calls_again() -> None:
    backend = FakeBackend(gate=asyncio.Event(), fail=BackendError(grpc.StatusCode.UNAVAILABLE, "gone"))

    async def run() -> tuple[list[BaseException | InferOutcome], InferOutcome]:
        dp = plane(backend)
        await dp.model(MODEL)
        tasks = [asyncio.ensure_future(dp.infer(request())) for _ in range(5)]
        while not backend.calls:
            await asyncio.sleep(0)
        for _ in range(10):
            await asyncio.sleep(0)
        assert backend.gate is not None
        backend.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        backend.fail = None
        return results, await dp.infer(request())

    results, after = asyncio.run(run())
    assert all(isinstance(r, BackendError) and r.code == grpc.StatusCode.UNAVAILABLE for r in results)
    assert after.cache == "miss"  # an error is not cached
    assert len(backend.calls) == 2


# -- version resolution and deadlines ------------------------------------------------------------


def test_unversioned_requests_resolve_to_the_newest_version() -> None:
    backend = FakeBackend(versions=("1", "2"))

    async def run() -> list[InferOutcome]:
        dp = plane(backend)
        return [await dp.infer(request()), await dp.infer(request(version="2")), await dp.infer(request(version="1"))]

    unversioned, two, one = asyncio.run(run())
    assert [c.version for c in backend.calls] == ["2", "1"]  # "" was sent on as "2"
    # "" and "2" are one cache entry; "1" is its own.
    assert (unversioned.cache, two.cache, one.cache) == ("miss", "hit-l1", "miss")
    assert reply_of(unversioned).model_version == "2"


def test_unknown_version_and_unknown_model_are_not_found_without_a_call() -> None:
    backend = FakeBackend(versions=("1", "2"))

    async def run() -> tuple[BaseException, BaseException]:
        dp = plane(backend)
        with pytest.raises(ModelNotFound) as version:
            await dp.infer(request(version="3"))
        other = build_request("nope", {"x": X})
        with pytest.raises(ModelNotFound) as model:
            await dp.infer(other)
        return version.value, model.value

    version, model = asyncio.run(run())
    assert "no version '3'" in str(version) and "available: 1, 2" in str(version)
    assert "nope" in str(model)
    assert backend.calls == []


def test_metadata_is_fetched_once_and_a_stale_view_outlives_an_outage() -> None:
    backend = FakeBackend()

    async def run() -> InferOutcome:
        dp = plane(backend, metadata_ttl_seconds=0.0)  # every request refreshes
        await asyncio.gather(*(dp.model(MODEL) for _ in range(10)))
        fetched = backend.metadata_calls
        backend.metadata_fail = Unavailable("no function answers")
        outcome = await dp.infer(request())  # validated against the last view
        assert fetched == 1, fetched  # ten concurrent lookups, one fetch
        return outcome

    assert asyncio.run(run()).cache == "miss"


def test_the_callers_deadline_or_the_models_timeout_reaches_the_backend() -> None:
    backend = FakeBackend(timeout_ms=2500)

    async def run() -> None:
        dp = plane(backend)
        await dp.infer(request(cache=False), timeout=1.25)
        await dp.infer(request(cache=False))  # no caller deadline: the model's timeout_ms
        no_timeout_ms = plane(FakeBackend(timeout_ms=None))
        await no_timeout_ms.infer(request(cache=False))  # neither: the gateway's default (7 s here)
        assert isinstance(no_timeout_ms.backend, FakeBackend)
        backend.calls.extend(no_timeout_ms.backend.calls)

    asyncio.run(run())
    assert [c.timeout for c in backend.calls] == [1.25, 2.5, 7.0]


def test_a_waiter_on_a_slow_flight_gets_deadline_exceeded() -> None:
    backend = FakeBackend(gate=asyncio.Event())  # never set: the function never answers

    async def run() -> BaseException:
        dp = plane(backend)
        with pytest.raises(DeadlineExceeded) as caught:
            await dp.infer(request(), timeout=0.05)
        await dp.close()
        return caught.value

    error = asyncio.run(run())
    assert "no result within 50 ms" in str(error)
    assert len(backend.calls) == 1


# -- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "http_status", "like"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400, InvalidArgument),
        (grpc.StatusCode.NOT_FOUND, 404, ModelNotFound),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, ResourceExhausted),
        (grpc.StatusCode.UNAVAILABLE, 503, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504, DeadlineExceeded),
        (grpc.StatusCode.INTERNAL, 500, InferenceError),
    ],
)
def test_backend_errors_keep_their_code_and_map_to_the_http_status_of_their_class(
    code: grpc.StatusCode, http_status: int, like: type[InferenceError]
) -> None:
    backend = FakeBackend(fail=BackendError(code, f"function said {code.name}"))

    async def run() -> tuple[BaseException, GatewayDataPlane]:
        dp = plane(backend)
        with pytest.raises(BackendError) as caught:
            await dp.infer(request())
        return caught.value, dp

    error, dp = asyncio.run(run())
    assert isinstance(error, BackendError) and isinstance(error, InferenceError)
    assert error.code == code and error.http_status == http_status == like.http_status
    assert error.message == f"function said {code.name}"
    # Counted under the function's code, both as a function call and as the request's outcome.
    assert function_calls(dp, code.name) == 1
    assert requests_counted(dp, code.name, "bypass") == 1


def test_not_found_from_the_function_drops_the_metadata_view() -> None:
    backend = FakeBackend()

    async def run() -> int:
        dp = plane(backend)
        await dp.infer(request(cache=False))
        backend.fail = BackendError(grpc.StatusCode.NOT_FOUND, "version went away")
        with pytest.raises(BackendError):
            await dp.infer(request(cache=False))
        backend.fail = None
        await dp.infer(request(cache=False))
        return backend.metadata_calls

    assert asyncio.run(run()) == 2  # fetched again after NOT_FOUND


def test_invalid_requests_are_refused_before_the_backend() -> None:
    backend = FakeBackend()
    bad_shape = build_request(MODEL, {"x": np.zeros((2, 3), dtype=np.float32)})
    too_big = build_request(MODEL, {"x": np.zeros((9, 4), dtype=np.float32)})  # max_batch_size 8
    wrong_output = request()
    wrong_output.outputs.add(name="z")

    async def run() -> list[InvalidArgument]:
        dp = plane(backend)
        errors = []
        for bad in (bad_shape, too_big, wrong_output):
            with pytest.raises(InvalidArgument) as caught:
                await dp.infer(bad)
            errors.append(caught.value)
        return errors

    errors = asyncio.run(run())
    assert all(e.http_status == 400 for e in errors)
    assert backend.calls == []


def test_metadata_unavailable_with_no_view_is_unavailable() -> None:
    backend = FakeBackend(metadata_fail=Unavailable("no function answers for 'double'"))

    async def run() -> None:
        dp = plane(backend)
        with pytest.raises(Unavailable, match="no function answers"):
            await dp.infer(request())

    asyncio.run(run())
    assert backend.calls == []
