"""The gateway's data plane, independent of gRPC or REST.

validate against the function's metadata → look the request up in the cache
(L1, then Redis) → on a miss, one call per distinct request (single-flight)
to a function through the backend → store the reply without delaying it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from edgeinfer.cache.key import uncacheable_reason
from edgeinfer.gateway.backends.base import Backend, BackendError, request_arrival
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import DeadlineExceeded, InferenceError, ModelNotFound
from edgeinfer.protocol.tensors import (
    Array,
    TensorSpec,
    batch_size,
    decode_inputs,
    encode_outputs,
    output_arrays,
    raw_bytes,
    requested_outputs,
)
from edgeinfer.protocol.tracing import Tracing
from edgeinfer.protocol.wire import id_field, parameter_field

log = logging.getLogger(__name__)

CACHE_STATUS_PARAMETER = "cache_status"
DEFAULT_TENANT = "default"
# Set by the fronts' authentication (gateway/auth.py) for the call's task; when set it wins over
# the `tenant` argument, so a tenant comes from a verified key and never from what a client sends.
authenticated_tenant: ContextVar[str | None] = ContextVar("authenticated_tenant", default=None)
# The cache_status response parameter of each status, serialized once.
_STATUS_FIELDS = {
    status: parameter_field(CACHE_STATUS_PARAMETER, status)
    for status in ("hit-l1", "hit-redis", "miss", "coalesced", "bypass")
}
METADATA_TIMEOUT_S = 5.0


class Hit(Protocol):
    # Read-only, so a frozen CacheHit (edgeinfer.cache) satisfies it.
    @property
    def payload(self) -> bytes: ...

    @property
    def tier(self) -> str: ...

    @property
    def refresh(self) -> bool: ...


class Cache(Protocol):
    async def get(self, key: bytes) -> Hit | None: ...

    def put(self, key: bytes, payload: bytes, ttl_seconds: float, compute_seconds: float) -> bool: ...


class Flights(Protocol):
    async def do(self, key: bytes, fn: Callable[[], Awaitable[bytes]]) -> tuple[bytes, bool]: ...


KeyFunction = Callable[[pb.ModelInferRequest, dict[str, Array], str, str], bytes]


@dataclass(frozen=True)
class ModelView:
    """What the gateway knows of a model, from its function's metadata."""

    name: str
    version: str  # the version an unversioned request resolves to
    versions: tuple[str, ...]
    inputs: dict[str, TensorSpec]
    outputs: tuple[str, ...]
    max_batch_size: int
    cache_enabled: bool
    cache_ttl_seconds: float
    timeout_seconds: float
    metadata: pb.ModelMetadataResponse
    fetched_at: float

    @classmethod
    def from_metadata(cls, metadata: pb.ModelMetadataResponse, default_timeout: float) -> ModelView:
        props = metadata.properties

        def text(key: str, default: str) -> str:
            return props[key].string_param if key in props else default

        timeout = props["timeout_ms"].int64_param / 1000 if "timeout_ms" in props else default_timeout
        versions = tuple(metadata.versions) or ("",)
        return cls(
            name=metadata.name,
            version=versions[-1],
            versions=versions,
            inputs={t.name: TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in metadata.inputs},
            outputs=tuple(t.name for t in metadata.outputs),
            max_batch_size=int(text("max_batch_size", "0")),
            cache_enabled=text("cache_enabled", "true") == "true",
            cache_ttl_seconds=props["cache_ttl_seconds"].double_param if "cache_ttl_seconds" in props else 300.0,
            timeout_seconds=timeout,
            metadata=metadata,
            fetched_at=time.monotonic(),
        )


@dataclass(frozen=True, slots=True)
class InferOutcome:
    payload: bytes  # a serialized ModelInferResponse, ready to send
    cache: str  # hit-l1 | hit-redis | miss | coalesced | bypass


class GatewayDataPlane:
    def __init__(
        self,
        backend: Backend,
        metrics: GatewayMetrics,
        tracing: Tracing,
        *,
        cache: Cache | None = None,
        flights: Flights | None = None,
        key_function: KeyFunction | None = None,
        metadata_ttl_seconds: float = 30.0,
        default_timeout_seconds: float = 10.0,
    ) -> None:
        self.backend = backend
        self.metrics = metrics
        self.tracing = tracing
        self._cache = cache
        self._flights = flights
        self._key = key_function
        self._metadata_ttl = metadata_ttl_seconds
        self._default_timeout = default_timeout_seconds
        self._views: dict[tuple[str, str], ModelView] = {}
        self._fetching: dict[tuple[str, str], asyncio.Task[ModelView]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Seconds added to every inference: set by drills through the admin port (PUT /v1/fault).
        self.fault_delay = 0.0

    # -- metadata ----------------------------------------------------------------------------

    async def model(self, name: str, version: str = "") -> ModelView:
        """The model's view, fetched from a function and kept for metadata_ttl_seconds.

        If a refresh fails because no function answers, the last view is kept:
        validation and cache hits go on while the functions are away.
        """
        key = (name, version)
        view = self._views.get(key)
        if view is not None and time.monotonic() - view.fetched_at < self._metadata_ttl:
            return view
        task = self._fetching.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._fetch(name, version))
            self._fetching[key] = task
            task.add_done_callback(lambda _: self._fetching.pop(key, None))
        try:
            return await asyncio.shield(task)
        except ModelNotFound:
            self._views.pop(key, None)
            raise
        except InferenceError:
            if view is not None:
                return view
            raise

    async def _fetch(self, name: str, version: str) -> ModelView:
        metadata = await self.backend.model_metadata(name, version, METADATA_TIMEOUT_S)
        view = ModelView.from_metadata(metadata, self._default_timeout)
        self._views[(name, version)] = view
        return view

    async def model_metadata(self, name: str, version: str = "") -> pb.ModelMetadataResponse:
        return (await self.model(name, version)).metadata

    async def model_ready(self, name: str, version: str = "") -> bool:
        return await self.backend.model_ready(name, version, METADATA_TIMEOUT_S)

    async def ready(self) -> bool:
        """Ready when at least one routed model has a function that answers."""
        checks = await asyncio.gather(*(self.model_ready(m) for m in self.backend.models()))
        return any(checks)

    # -- inference ---------------------------------------------------------------------------

    async def infer(
        self,
        request: pb.ModelInferRequest,
        *,
        raw_request: bytes | None = None,
        tenant: str = DEFAULT_TENANT,
        timeout: float | None = None,
    ) -> InferOutcome:
        started = time.perf_counter()
        request_arrival.set(time.monotonic())
        tenant = authenticated_tenant.get() or tenant
        model = request.model_name
        status = "bypass"
        try:
            outcome = await self._infer(request, raw_request, tenant, timeout)
        except InferenceError as exc:
            self.metrics.observe(model, exc.code.name, status, time.perf_counter() - started)
            raise
        self.metrics.observe(model, "OK", outcome.cache, time.perf_counter() - started)
        return outcome

    async def _infer(
        self, request: pb.ModelInferRequest, raw_request: bytes | None, tenant: str, timeout: float | None
    ) -> InferOutcome:
        if self.fault_delay:
            await asyncio.sleep(self.fault_delay)
        view = await self.model(request.model_name)
        version = request.model_version or view.version
        if version not in view.versions:
            raise ModelNotFound(
                f"model '{view.name}' has no version '{version}'; available: {', '.join(view.versions)}"
            )
        decoded, raw = decode_inputs(request, view.inputs)
        batch_size(view.name, decoded, view.max_batch_size)
        requested_outputs(view.name, request, view.outputs)
        budget = timeout if timeout is not None else view.timeout_seconds
        forward = self._forward_bytes(request, raw_request, raw, decoded, view, version)
        use_cache = (
            self._cache is not None
            and self._key is not None
            and view.cache_enabled
            and uncacheable_reason(request) is None
        )
        if not use_cache:
            payload = await self._call(view.name, forward, budget)
            return self._reply(request, raw, payload, "bypass")
        assert self._cache is not None and self._key is not None and self._flights is not None
        key = self._key(request, decoded, tenant, version)
        with self.tracing.child_span("cache.lookup", {"model": view.name}):
            hit = await self._cache.get(key)
        if hit is not None:
            if hit.refresh:  # XFetch: recompute before expiry, in the background
                self._spawn(self._refresh(key, view, forward, budget))
            return self._reply(request, raw, hit.payload, f"hit-{hit.tier}")
        try:
            async with asyncio.timeout(budget):
                payload, shared = await self._flights.do(key, lambda: self._call_and_store(key, view, forward, budget))
        except TimeoutError:
            raise DeadlineExceeded(
                f"model '{view.name}': no result within {budget * 1000:.0f} ms (waiting for an identical request)"
            ) from None
        return self._reply(request, raw, payload, "coalesced" if shared else "miss")

    @staticmethod
    def _forward_bytes(
        request: pb.ModelInferRequest,
        raw_request: bytes | None,
        raw: bool,
        decoded: dict[str, Array],
        view: ModelView,
        version: str,
    ) -> bytes:
        """The request as sent to a function: raw tensors, the resolved version, no id.

        Without the caller's id the function's reply can be cached and shared;
        the id goes back on at the end.
        """
        if raw and raw_request is not None and not request.id and request.model_version == version:
            return raw_request
        forward = pb.ModelInferRequest()
        forward.CopyFrom(request)
        forward.id = ""
        forward.model_version = version
        if not raw:
            for tensor in forward.inputs:
                tensor.ClearField("contents")
                forward.raw_input_contents.append(raw_bytes(decoded[tensor.name], tensor.datatype))
        return forward.SerializeToString()

    async def _call(self, model: str, forward: bytes, timeout: float) -> bytes:
        started = time.perf_counter()
        code = "OK"
        try:
            with self.tracing.child_span("function.call", {"model": model}, client=True):
                return await self.backend.infer(model, forward, timeout, self.tracing.outgoing_metadata())
        except BackendError as exc:
            code = exc.code.name
            if exc.code.name == "NOT_FOUND":
                self._views.pop((model, ""), None)  # a version went away: fetch metadata again
            raise
        finally:
            self.metrics.function_call(model, code, time.perf_counter() - started)

    async def _call_and_store(self, key: bytes, view: ModelView, forward: bytes, timeout: float) -> bytes:
        started = time.perf_counter()
        payload = await self._call(view.name, forward, timeout)
        assert self._cache is not None
        self._cache.put(key, payload, view.cache_ttl_seconds, time.perf_counter() - started)
        return payload

    async def _refresh(self, key: bytes, view: ModelView, forward: bytes, timeout: float) -> None:
        assert self._flights is not None
        try:
            await self._flights.do(key, lambda: self._call_and_store(key, view, forward, timeout))
        except InferenceError as exc:
            log.debug("early refresh of %s failed: %s", view.name, exc.message)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _reply(request: pb.ModelInferRequest, raw: bool, payload: bytes, status: str) -> InferOutcome:
        if raw:
            return InferOutcome(payload + id_field(request.id) + _STATUS_FIELDS[status], status)
        # A typed request gets a typed reply: decode the raw one and re-encode it.
        source = pb.ModelInferResponse.FromString(payload)
        reply = pb.ModelInferResponse(model_name=source.model_name, model_version=source.model_version, id=request.id)
        encode_outputs(reply, list(output_arrays(source).items()), raw=False)
        reply.parameters[CACHE_STATUS_PARAMETER].string_param = status
        return InferOutcome(reply.SerializeToString(), status)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def region_metadata(region: str, cache: str | None) -> Sequence[tuple[str, str]]:
    items = [("x-edgeinfer-region", region)]
    if cache is not None:
        items.append(("x-edgeinfer-cache", cache))
    return tuple(items)
