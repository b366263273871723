"""The wire-level hit path (gateway/dataplane.py wire_lookup/wire_hit, cache/wire_key.py) and the lean miss path.

In-process data planes over a fake backend (one Redis test), and the gateway's servicer on a real gRPC server
on 127.0.0.1: a repeated request is answered from its bytes without decoding a tensor, with the caller's id; a
wire miss takes the canonical path (raw and typed still share an entry) and fills the wire entry; statistics and
metrics count wire hits as every hit; tenants, versions and metadata keep their entries apart; a function gets
the request's own bytes, less the id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis

import edgeinfer.gateway.dataplane as dataplane_module
from edgeinfer.cache.key import cache_key, key_parts_from_request
from edgeinfer.cache.l1 import L1Cache
from edgeinfer.cache.prediction_cache import PredictionCache
from edgeinfer.cache.redis_server import RedisServer
from edgeinfer.cache.redis_store import RedisStore
from edgeinfer.cache.singleflight import SingleFlight
from edgeinfer.gateway.backends.base import Metadata
from edgeinfer.gateway.dataplane import (
    CACHE_STATUS_PARAMETER,
    GatewayDataPlane,
    InferOutcome,
    authenticated_tenant,
)
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.gateway.servicer import GatewayServicer
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import Array, TensorSpec, build_request, decode_inputs, encode_outputs, output_arrays
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.protocol.wire import scan_infer_request

MODEL = "double"
X = np.arange(8, dtype=np.float32).reshape(2, 4)


@dataclass
class FakeBackend:
    """`double` (y = 2x); keeps every request it was sent, as bytes. `versions` and `ttl` are its metadata's."""

    versions: tuple[str, ...] = ("1", "2")
    ttl: float = 300.0
    sent: list[bytes] = field(default_factory=list)

    def models(self) -> list[str]:
        return [MODEL]

    async def infer(self, model: str, version: str, request: bytes, timeout: float, metadata: Metadata) -> bytes:
        self.sent.append(request)
        parsed = pb.ModelInferRequest.FromString(request)
        inputs, _ = decode_inputs(parsed, {"x": TensorSpec("x", "FP32", (-1, 4))})
        reply = pb.ModelInferResponse(model_name=model, model_version=parsed.model_version)
        outputs: list[tuple[str, Array]] = [("y", inputs["x"] * 2)]
        encode_outputs(reply, outputs, raw=True)
        return reply.SerializeToString()

    async def model_metadata(self, model: str, version: str, timeout: float) -> pb.ModelMetadataResponse:
        metadata = pb.ModelMetadataResponse(
            name=MODEL,
            versions=list(self.versions),
            platform="onnxruntime_onnx",
            inputs=[pb.ModelMetadataResponse.TensorMetadata(name="x", datatype="FP32", shape=[-1, 4])],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(name="y", datatype="FP32", shape=[-1, 4])],
        )
        metadata.properties["max_batch_size"].string_param = "8"
        metadata.properties["cache_ttl_seconds"].double_param = self.ttl
        return metadata

    async def model_config(self, model: str, version: str, timeout: float) -> pb.ModelConfigResponse:
        return pb.ModelConfigResponse()

    async def model_ready(self, model: str, version: str, timeout: float) -> bool:
        return model == MODEL

    async def close(self) -> None:
        return None


def key(request: pb.ModelInferRequest, decoded: dict[str, Array], tenant: str, version: str) -> bytes:
    return cache_key(key_parts_from_request(request, decoded, tenant=tenant, version=version))


def plane(backend: FakeBackend, cache: PredictionCache | None = None, **options: Any) -> GatewayDataPlane:
    return GatewayDataPlane(
        backend,
        GatewayMetrics("test"),
        Tracing(),
        cache=cache if cache is not None else PredictionCache(l1=L1Cache(1 << 20)),
        flights=SingleFlight[bytes](),
        key_function=key,
        **options,
    )


def serialized(version: str = "", request_id: str = "", raw: bool = True, x: np.ndarray = X) -> bytes:
    return build_request(MODEL, {"x": x}, version=version, request_id=request_id, raw=raw).SerializeToString()


@dataclass
class Decodes:
    """Counts the data plane's tensor decodes: a wire hit must make none."""

    count: int = 0


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Decodes:
    seen = Decodes()
    real = dataplane_module.decode_inputs

    def counted(*args: Any, **kwargs: Any) -> Any:
        seen.count += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(dataplane_module, "decode_inputs", counted)
    return seen


async def serve_bytes(dp: GatewayDataPlane, data: bytes) -> InferOutcome:
    """What the gRPC servicer does with ModelInfer's bytes (gateway/servicer.py ModelInferRaw)."""
    wire = dp.wire_lookup(data)
    outcome = await dp.wire_hit(wire) if wire is not None else None
    if outcome is None:
        outcome = await dp.infer(pb.ModelInferRequest.FromString(data), raw_request=data, wire=wire)
    return outcome


def reply_of(outcome: InferOutcome) -> pb.ModelInferResponse:
    return pb.ModelInferResponse.FromString(outcome.payload)


def test_a_repeated_request_is_a_wire_hit_without_a_decode_and_keeps_each_callers_id(decodes: Decodes) -> None:
    backend = FakeBackend()

    async def run() -> list[InferOutcome]:
        dp = plane(backend)
        outcomes = [await serve_bytes(dp, serialized(request_id=rid)) for rid in ("a", "b", "")]
        await dp.close()
        return outcomes

    outcomes = asyncio.run(run())
    assert [o.cache for o in outcomes] == ["miss", "hit-l1", "hit-l1"]
    assert decodes.count == 1  # the miss; both hits answered from the bytes
    assert len(backend.sent) == 1
    for outcome, rid in zip(outcomes, ("a", "b", ""), strict=True):
        reply = reply_of(outcome)
        assert reply.id == rid
        assert reply.parameters[CACHE_STATUS_PARAMETER].string_param == outcome.cache
        assert reply.model_version == "2"
        np.testing.assert_array_equal(output_arrays(reply)["y"], X * 2)


def test_wire_hits_count_in_statistics_and_metrics_as_hits() -> None:
    async def run() -> GatewayDataPlane:
        dp = plane(FakeBackend())
        for rid in ("a", "b", "c"):
            await serve_bytes(dp, serialized(request_id=rid))
        return dp

    dp = asyncio.run(run())
    (stats,) = dp.statistics(MODEL, "2").model_stats
    assert stats.inference_stats.success.count == 3
    assert stats.inference_stats.cache_hit.count == 2 and stats.inference_stats.cache_hit.ns > 0
    assert stats.inference_stats.cache_miss.count == 1
    assert stats.execution_count == 1
    # Labelled with the version that served them: unversioned requests resolve to the latest, "2".
    assert dp.metrics.requests.labels("test", MODEL, "2", "OK", "hit-l1").value == 2
    assert dp.metrics.requests.labels("test", MODEL, "2", "OK", "miss").value == 1


def test_raw_and_typed_share_the_canonical_entry_and_each_gets_a_wire_entry_of_its_form(decodes: Decodes) -> None:
    backend = FakeBackend()

    async def run() -> list[InferOutcome]:
        dp = plane(backend)
        raw = await serve_bytes(dp, serialized(raw=True))
        typed = [await serve_bytes(dp, serialized(raw=False, request_id=str(i))) for i in range(2)]
        return [raw, *typed]

    raw, typed_first, typed_again = asyncio.run(run())
    # The typed request's wire key is its own; its first time is a canonical hit, which fills it.
    assert (raw.cache, typed_first.cache, typed_again.cache) == ("miss", "hit-l1", "hit-l1")
    assert decodes.count == 2 and len(backend.sent) == 1
    for outcome in (typed_first, typed_again):
        reply = reply_of(outcome)
        assert not reply.raw_output_contents and list(reply.outputs[0].contents.fp32_contents) == list(X.ravel() * 2)
    assert reply_of(typed_again).id == "1"


def test_a_wire_entry_filled_from_a_canonical_hit_keeps_its_compute_cost_for_xfetch() -> None:
    """XFetch refreshes an entry early in proportion to what its miss cost; a wire copy made from a canonical hit
    carries that cost, so it is refreshed as early as the entry it copies (0 would mean: never early)."""
    backend = FakeBackend()
    cache = PredictionCache(l1=L1Cache(1 << 20))

    async def run() -> tuple[float, float]:
        dp = plane(backend, cache)
        await serve_bytes(dp, serialized(raw=True))  # the miss: the canonical entry, with the call's cost
        typed = serialized(raw=False)
        assert (await serve_bytes(dp, typed)).cache == "hit-l1"  # a canonical hit fills the typed wire entry
        request = pb.ModelInferRequest.FromString(typed)
        decoded, _ = decode_inputs(request, {"x": TensorSpec("x", "FP32", (-1, 4))})
        canonical = await cache.get(key(request, decoded, "default", "2"))
        wire = dp.wire_lookup(typed)
        assert canonical is not None and wire is not None
        copy = await cache.get(wire.key)
        assert copy is not None
        return canonical.compute_seconds, copy.compute_seconds

    canonical_cost, copy_cost = asyncio.run(run())
    assert canonical_cost > 0 and copy_cost == canonical_cost


def test_tenants_never_share_an_entry() -> None:
    backend = FakeBackend()

    async def as_tenant(dp: GatewayDataPlane, tenant: str) -> str:
        token = authenticated_tenant.set(tenant)
        try:
            return (await serve_bytes(dp, serialized())).cache
        finally:
            authenticated_tenant.reset(token)

    async def run() -> list[str]:
        dp = plane(backend)
        return [await as_tenant(dp, t) for t in ("acme", "acme", "globex", "globex")]

    assert asyncio.run(run()) == ["miss", "hit-l1", "miss", "hit-l1"]
    assert len(backend.sent) == 2


def test_versions_resolve_before_the_wire_key() -> None:
    """Unversioned resolves to 2: version 2 named shares its canonical entry (other bytes, so another wire key,
    filled from it); version 1 is another entry."""
    backend = FakeBackend()

    async def run() -> list[str]:
        dp = plane(backend)
        sequence = [serialized(), serialized(version="2"), serialized(version="2"), serialized(version="1")]
        return [(await serve_bytes(dp, data)).cache for data in sequence]

    assert asyncio.run(run()) == ["miss", "hit-l1", "hit-l1", "miss"]
    assert [pb.ModelInferRequest.FromString(s).model_version for s in backend.sent] == ["2", "1"]


def test_a_changed_model_metadata_gives_new_wire_keys() -> None:
    backend = FakeBackend()

    async def run() -> tuple[bytes, bytes, str]:
        dp = plane(backend, metadata_ttl_seconds=3600.0)
        await serve_bytes(dp, serialized())
        before = dp.wire_lookup(serialized())
        backend.versions = ("1", "2", "3")  # a new version: unversioned now means 3
        backend.ttl = 60.0
        dp._views.clear()  # as a metadata refresh would
        await dp.model(MODEL)
        after = dp.wire_lookup(serialized())
        assert before is not None and after is not None
        return before.key, after.key, (await serve_bytes(dp, serialized())).cache

    before, after, status = asyncio.run(run())
    assert before != after
    assert status == "miss"


def test_what_takes_the_canonical_path() -> None:
    """No wire lookup without a fetched view, for requests the cache does not keep, or for bytes the scan does not
    vouch for (the parser then says what is wrong)."""
    backend = FakeBackend()
    bypass = build_request(MODEL, {"x": X})
    bypass.parameters["cache"].string_param = "off"
    sequence = build_request(MODEL, {"x": X})
    sequence.parameters["sequence_id"].int64_param = 7
    kept = build_request(MODEL, {"x": X})
    kept.parameters["priority"].int64_param = 1

    async def run() -> None:
        dp = plane(backend)
        assert dp.wire_lookup(serialized()) is None  # no metadata yet
        await dp.model(MODEL)
        assert dp.wire_lookup(serialized()) is not None
        assert dp.wire_lookup(bypass.SerializeToString()) is None
        assert dp.wire_lookup(sequence.SerializeToString()) is None
        assert dp.wire_lookup(kept.SerializeToString()) is not None
        assert dp.wire_lookup(serialized()[:-3]) is None  # truncated
        assert dp.wire_lookup(serialized(version="9")) is None  # no such version
        assert dp.wire_lookup(b"\x1a\x02\xff\xfe" + serialized()) is None  # an id that is not UTF-8
        uncached = GatewayDataPlane(backend, GatewayMetrics("test"), Tracing())
        await uncached.model(MODEL)
        assert uncached.wire_lookup(serialized()) is None
        assert (await serve_bytes(dp, bypass.SerializeToString())).cache == "bypass"

    asyncio.run(run())


def test_the_function_gets_the_requests_own_bytes_less_the_id() -> None:
    backend = FakeBackend()
    versioned = serialized(version="1", x=X + 1)
    with_id = serialized(version="1", request_id="abc", x=X + 2)
    unversioned = serialized(request_id="abc", x=X + 3)

    async def run() -> None:
        dp = plane(backend)
        for data in (versioned, with_id, unversioned):
            await serve_bytes(dp, data)
        # Typed contents are rewritten as raw ones.
        await serve_bytes(dp, serialized(raw=False, x=X + 4))
        # Without a cache, the same lean forward.
        await serve_bytes(plane(backend, cache=None), serialized(version="1", request_id="z", x=X + 5))

    asyncio.run(run())
    first, second, third, typed, uncached = backend.sent
    assert first == versioned  # nothing to rewrite: forwarded as it came
    assert second == scan_infer_request(with_id).without_id()  # type: ignore[union-attr]
    assert len(second) == len(with_id) - len(b"\x1a\x03abc")
    parsed = pb.ModelInferRequest.FromString(third)
    assert (parsed.id, parsed.model_version) == ("", "2")
    typed_parsed = pb.ModelInferRequest.FromString(typed)
    assert len(typed_parsed.raw_input_contents) == 1 and not typed_parsed.inputs[0].HasField("contents")
    assert pb.ModelInferRequest.FromString(uncached).id == ""


def test_xfetch_on_a_wire_hit_refreshes_both_entries_in_the_background() -> None:
    backend = FakeBackend()
    # XFetch's beta so large that every hit of an entry with a known cost is flagged for refresh.
    cache = PredictionCache(l1=L1Cache(1 << 20), xfetch_beta=1e12)

    async def run() -> list[str]:
        dp = plane(backend, cache)
        statuses = [(await serve_bytes(dp, serialized(request_id="a"))).cache]
        statuses.append((await serve_bytes(dp, serialized(request_id="b"))).cache)
        await asyncio.gather(*dp._background)
        return statuses

    assert asyncio.run(run()) == ["miss", "hit-l1"]
    assert len(backend.sent) == 2  # the refresh's call
    assert backend.sent[1] == backend.sent[0]


def test_wire_entries_reach_redis_and_a_corrupt_one_is_a_miss_served_canonically(
    redis_server: RedisServer, tmp_path: Path, decodes: Decodes
) -> None:
    """Gateway A fills both entries in Redis; gateway B (no L1) answers from the wire entry, decoding nothing;
    with only the wire entry corrupted, B answers from the canonical entry and writes the wire entry again."""
    prefix = f"wire:{tmp_path.name}:"
    backend = FakeBackend()

    async def run() -> list[str]:
        store_a, store_b = (RedisStore(redis_server.url, key_prefix=prefix, get_timeout=5.0) for _ in range(2))
        cache_a = PredictionCache(l1=L1Cache(1 << 20), redis=store_a)
        cache_b = PredictionCache(redis=store_b)
        assert await cache_a.start() and await cache_b.start()
        a, b = plane(backend, cache_a), plane(backend, cache_b)
        statuses = [(await serve_bytes(a, serialized())).cache]
        while cache_a.pending_writes or cache_a.stats().redis_writes < 2:  # canonical and wire
            await asyncio.sleep(0.01)
        await b.model(MODEL)
        decoded_before = decodes.count
        statuses.append((await serve_bytes(b, serialized(request_id="x"))).cache)
        assert decodes.count == decoded_before
        wire = b.wire_lookup(serialized())
        assert wire is not None
        # The documented Redis layout (docs/cache.md): <prefix><64 hex digits>.
        redis.Redis(host="127.0.0.1", port=redis_server.port).set(f"{prefix}{wire.key.hex()}", b"not an entry")
        statuses.append((await serve_bytes(b, serialized())).cache)  # canonical hit
        while cache_b.pending_writes or cache_b.stats().redis_writes < 1:
            await asyncio.sleep(0.01)
        statuses.append((await serve_bytes(b, serialized())).cache)  # the wire entry again
        for store in (store_a, store_b):
            await store.close()
        return statuses

    assert asyncio.run(run()) == ["miss", "hit-redis", "hit-redis", "hit-redis"]
    assert len(backend.sent) == 1


# -- the servicer on a real gRPC server ---------------------------------------------------------


@pytest.fixture
def grpc_gateway() -> Iterator[tuple[str, FakeBackend]]:
    """The gateway's servicer and an in-process data plane on 127.0.0.1, in a loop of its own thread."""
    import threading

    backend = FakeBackend()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()
    where: list[str] = []

    async def serve() -> None:
        dp = plane(backend)
        server = grpc.aio.server()
        GatewayServicer(dp, "test").register(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        where.append(f"127.0.0.1:{port}")
        ready.set()
        await stop.wait()
        await server.stop(None)
        await dp.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(30)
    yield where[0], backend
    loop.call_soon_threadsafe(stop.set)
    thread.join(30)
    loop.close()


def test_over_grpc_hits_carry_the_callers_id_and_bad_bytes_are_invalid_argument(
    grpc_gateway: tuple[str, FakeBackend],
) -> None:
    address, backend = grpc_gateway
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        statuses = []
        for rid in ("first", "second"):
            reply, call = stub.ModelInfer.with_call(build_request(MODEL, {"x": X}, request_id=rid), timeout=30)
            trailers = dict(call.trailing_metadata() or ())
            assert (
                reply.id == rid
                and reply.parameters[CACHE_STATUS_PARAMETER].string_param == trailers["x-edgeinfer-cache"]
            )
            statuses.append(trailers["x-edgeinfer-cache"])
        assert statuses == ["miss", "hit-l1"]
        raw_call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        good = serialized(request_id="ok")
        for bad in (good[:-2], b"\x1a\x02\xff\xfe" + good):
            with pytest.raises(grpc.RpcError) as caught:
                raw_call(bad, timeout=30)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
            assert "not a valid inference.ModelInferRequest" in (caught.value.details() or "")
        # The stream takes the canonical path and shares the entries.
        replies = list(stub.ModelStreamInfer(iter([build_request(MODEL, {"x": X}, request_id="s")]), timeout=30))
        assert replies[0].infer_response.id == "s"
        assert replies[0].infer_response.parameters[CACHE_STATUS_PARAMETER].string_param == "hit-l1"
    assert len(backend.sent) == 1
