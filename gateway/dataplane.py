"""The gateway's data plane, independent of gRPC or REST.

validate against the function's metadata → look the request up in the cache
(L1, then Redis) → on a miss, one call per distinct request (single-flight)
to a function through the backend → store the reply without delaying it.

A front that has the request's bytes (gRPC ModelInfer) looks them up first, before
parsing anything (wire_lookup, wire_hit: cache/wire_key.py); a wire miss takes the
path above, which fills the wire entry.

A request that names no version gets one from the model's traffic policy (gateway/traffic.py: a weighted pick),
else the latest; one that names a version is never split. Validation, the cache key and the call use that
version. A sampled share of unversioned requests is copied, once answered, to the policy's shadow version in the
background, and the two answers compared (gateway/shadow.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from google.protobuf.message import DecodeError

from edgeinfer.cache.key import uncacheable_reason
from edgeinfer.cache.wire_key import wire_cacheable, wire_key
from edgeinfer.gateway.backends.base import Backend, BackendError, request_arrival
from edgeinfer.gateway.metrics import GatewayMetrics
from edgeinfer.gateway.shadow import ERROR, compare_replies
from edgeinfer.gateway.statistics import GatewayStatistics, ModelCounters
from edgeinfer.gateway.traffic import Shadow, Split, TrafficTable, effective_weights
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.errors import DeadlineExceeded, FailedPrecondition, InferenceError, ModelNotFound
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
from edgeinfer.protocol.wire import (
    ScannedInferRequest,
    id_field,
    id_field_bytes,
    parameter_field,
    request_version_field,
    scan_infer_request,
)

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
# Shadow calls in flight at most; a sampled request beyond it is counted as dropped, never queued.
MAX_SHADOWS_IN_FLIGHT = 32
READY = "READY"
UNAVAILABLE = "UNAVAILABLE"


class Hit(Protocol):
    # Read-only, so a frozen CacheHit (edgeinfer.cache) satisfies it.
    @property
    def payload(self) -> bytes: ...

    @property
    def tier(self) -> str: ...

    @property
    def refresh(self) -> bool: ...

    @property
    def ttl_seconds(self) -> float: ...  # what is left of the entry's life (inf: no TTL)

    @property
    def compute_seconds(self) -> float: ...  # what the miss that filled it cost (XFetch's delta)


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
    # Names this metadata in wire keys: another answer from the function (inputs, versions, cache settings)
    # gives other keys, so a wire entry never outlives the validation it stands for.
    tag: bytes = b""

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
            tag=hashlib.blake2b(metadata.SerializeToString(deterministic=True), digest_size=16).digest(),
        )


@dataclass(frozen=True, slots=True)
class InferOutcome:
    payload: bytes  # a serialized ModelInferResponse, ready to send
    cache: str  # hit-l1 | hit-redis | miss | coalesced | bypass


@dataclass(slots=True)
class WireLookup:
    """A serialized request's wire-level key, with what a hit needs to answer it unparsed."""

    scanned: ScannedInferRequest
    key: bytes
    view: ModelView  # the resolved version's
    version: str  # resolved
    tenant: str
    started: int  # perf_counter_ns when the request arrived
    lookup_ns: int = 0  # the wire lookup's time, once done


@dataclass(frozen=True, slots=True)
class _Prepared:
    decoded: dict[str, Array]
    raw: bool
    batch: int
    budget: float
    forward: bytes
    use_cache: bool


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
        wire_cache: Cache | None = None,
        metadata_ttl_seconds: float = 30.0,
        default_timeout_seconds: float = 10.0,
        traffic: TrafficTable | None = None,
    ) -> None:
        """`wire_cache` holds the wire entries (default: `cache`, whose two tiers they then share; wire keys never
        equal canonical ones). `traffic`: the models' traffic policies (default: an empty table in memory)."""
        self.backend = backend
        self.metrics = metrics
        self.tracing = tracing
        self._cache = cache
        self._wire_cache = wire_cache if wire_cache is not None else cache
        self._flights = flights
        self._key = key_function
        self._metadata_ttl = metadata_ttl_seconds
        self._default_timeout = default_timeout_seconds
        self._views: dict[tuple[str, str], ModelView] = {}
        # The functions' configs with this gateway's cache setting, and when each was fetched; like the views,
        # only answers for real (model, version) pairs are kept, so clients cannot grow it.
        self._configs: dict[tuple[str, str], tuple[pb.ModelConfigResponse, float]] = {}
        self.statistics_table = GatewayStatistics()
        self._fetching: dict[tuple[str, str], asyncio.Task[ModelView]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Seconds added to every inference: set by drills through the admin port (PUT /v1/fault).
        self.fault_delay = 0.0
        self.traffic = traffic if traffic is not None else TrafficTable()
        self._splits: dict[str, Split] = self.traffic.splits  # the same dict: changes show at once
        self._shadows: set[asyncio.Task[None]] = set()
        metrics.traffic_weights = self._traffic_weights
        # A backend that routes versions by Knative traffic tag follows each policy's tags, loaded ones included.
        self.traffic.on_change = self.apply_tags
        for model, policy in list(self.traffic.policies.items()):
            self.apply_tags(model, policy.tags)

    def apply_tags(self, model: str, tags: Mapping[str, str]) -> None:
        """Route each tagged version to its Knative tag (backends without tags ignore this), and forget the
        model's unversioned view: a version that only a tag serves is known from the next fetch on."""
        set_tags = getattr(self.backend, "set_tags", None)
        if set_tags is None:
            return
        set_tags(model, dict(tags))
        self._views.pop((model, ""), None)

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

    async def model_config(self, name: str, version: str = "") -> pb.ModelConfigResponse:
        """The function's Triton ModelConfig, with response_cache.enable saying whether THIS gateway caches the
        model's replies (it has a cache, and the model's cache is enabled). Kept for metadata_ttl_seconds; if a
        refresh fails because no function answers, the last good answer is kept, as the views are."""
        key = (name, version)
        kept = self._configs.get(key)
        if kept is not None and time.monotonic() - kept[1] < self._metadata_ttl:
            return kept[0]
        try:
            view = await self.model(name, version)
            config = await self.backend.model_config(name, version, METADATA_TIMEOUT_S)
        except InferenceError as exc:
            if kept is None or exc.code == ModelNotFound.code:
                self._configs.pop(key, None)
                raise
            return kept[0]
        reply = pb.ModelConfigResponse()
        reply.CopyFrom(config)
        reply.config.response_cache.enable = self._cache is not None and view.cache_enabled
        self._configs[key] = (reply, time.monotonic())
        return reply

    def _known_versions(self, name: str) -> list[str]:
        """The versions the functions reported for the model (any view kept, stale or not) and those counted."""
        view = self._views.get((name, "")) or next((v for (n, _), v in self._views.items() if n == name), None)
        known = [v for v in view.versions if v] if view is not None else []
        return known + [v for v in self.statistics_table.counted_versions(name) if v not in known]

    async def statistics_of(self, name: str = "", version: str = "") -> pb.ModelStatisticsResponse:
        """statistics(), after learning a named model's versions when none is known yet: a gateway (or one of its
        workers) that has served nothing still reports each version, with zeros, as Triton does; perf_analyzer
        looks for the version it drives there. Listing every model fetches nothing."""
        if name and name in self.backend.models() and not self._known_versions(name):
            with contextlib.suppress(InferenceError):
                await self.model(name)
        return self.statistics(name, version)

    def statistics(self, name: str = "", version: str = "") -> pb.ModelStatisticsResponse:
        """This gateway's statistics with Triton's meanings (gateway/statistics.py): every routed model when
        `name` is empty, else that model; every version the gateway knows of unless `version` names one."""
        routed = self.backend.models()
        if name and name not in routed:
            raise ModelNotFound(f"unknown model '{name}'; this gateway routes: {', '.join(routed) or '(none)'}")
        reply = pb.ModelStatisticsResponse()
        for model in [name] if name else routed:
            versions = self._known_versions(model)
            if version:
                if versions and version not in versions:
                    raise ModelNotFound(f"model '{model}' has no version '{version}'; available: {', '.join(versions)}")
                versions = [version]
            # Nothing known yet (no request, no metadata): one unversioned entry of zeros.
            reply.model_stats.extend(self.statistics_table.model_statistics(model, versions or [""]))
        return reply

    async def repository_index(self, ready_only: bool = False) -> pb.RepositoryIndexResponse:
        """The routed models, one entry per version the functions reported (none known: one unversioned entry),
        READY when the backend says a function serves the model, else UNAVAILABLE with the reason. Only
        metadata already fetched is used: listing never wakes a model scaled to zero."""
        models = self.backend.models()
        ready = await asyncio.gather(*(self.model_ready(m) for m in models))
        reply = pb.RepositoryIndexResponse()
        for model, is_ready in zip(models, ready, strict=True):
            if ready_only and not is_ready:
                continue
            state = READY if is_ready else UNAVAILABLE
            reason = "" if is_ready else f"no function for model '{model}' is ready in this gateway's region"
            for version in self._known_versions(model) or [""]:
                reply.models.add(name=model, version=version, state=state, reason=reason)
        return reply

    def refuse_repository_change(self, action: str, model: str) -> NoReturn:
        """RepositoryModelLoad/Unload: a gateway routes to functions; models are deployed where they run."""
        raise FailedPrecondition(
            f"cannot {action} model '{model}' here: the gateway routes to functions and does not load or unload "
            "models; deploy a model with `edgeinfer deploy` (Knative), or add it to the repository that "
            "`edgeinfer up` serves"
        )

    async def ready(self) -> bool:
        """Ready when at least one routed model has a function that answers."""
        checks = await asyncio.gather(*(self.model_ready(m) for m in self.backend.models()))
        return any(checks)

    # -- inference ---------------------------------------------------------------------------

    def _pick(self, model: str, base: ModelView) -> str:
        """The version of a request that names none: the traffic policy's weighted pick among the versions the
        model has, else its default (the latest)."""
        split = self._splits.get(model)
        if split is not None:
            version = split.pick()
            if version and version in base.versions:
                return version
        return base.version

    def wire_lookup(self, data: bytes, tenant: str = DEFAULT_TENANT, version: str = "") -> WireLookup | None:
        """The wire-level key of a serialized ModelInferRequest (cache/wire_key.py), or None where that path does
        not apply and the request is parsed first: no cache, a fault delay set, bytes the scan will not vouch
        for, a model (or the resolved version) whose view is not fetched or is stale, an unknown version, a
        request the cache would not keep. `version`: the one already resolved for an unversioned request (else
        it is resolved here, as infer() does). Takes no I/O: a scan of the top-level fields and one hash."""
        started = time.perf_counter_ns()
        if self._wire_cache is None or self._key is None or self.fault_delay:
            return None
        scanned = scan_infer_request(data)
        if scanned is None:
            return None
        now = time.monotonic()
        base = self._views.get((scanned.model_name, ""))
        if base is None or now - base.fetched_at >= self._metadata_ttl:
            return None
        picked = not (scanned.model_version or version)
        version = scanned.model_version or version or self._pick(base.name, base)
        view = base if version == base.version else self._views.get((base.name, version))
        if (
            version not in base.versions
            or not wire_cacheable(scanned)
            or view is None
            or not view.cache_enabled
            or now - view.fetched_at >= self._metadata_ttl
        ):
            if picked and (split := self._splits.get(base.name)) is not None:
                split.undo(version)  # infer() picks for this request: one pick per request
            return None
        tenant = authenticated_tenant.get() or tenant
        key = wire_key(scanned, tenant=tenant, version=version, model_tag=view.tag)
        return WireLookup(scanned, key, view, version, tenant, started)

    async def wire_hit(self, wire: WireLookup) -> InferOutcome | None:
        """Answer from the wire entry, never decoding a tensor: the stored reply with the caller's id and the
        cache status appended. None on a miss: the caller parses the request and calls infer(..., wire=wire),
        which fills the entry. Counted in statistics and metrics as every hit is."""
        assert self._wire_cache is not None
        model = wire.view.name
        counters = self.statistics_table.counters(model, wire.version)
        try:
            looked_up = time.perf_counter_ns()
            with self.tracing.child_span("cache.lookup", {"model": model, "key": "wire"}):
                hit = await self._wire_cache.get(wire.key)
            wire.lookup_ns = time.perf_counter_ns() - looked_up
        except BaseException as exc:  # cancelled while Redis answered: the client went away
            self._failed(counters, model, wire.version, wire.started, exc)
            raise
        if hit is None:
            return None
        counters.cache_hit_count += 1
        counters.cache_hit_ns += wire.lookup_ns
        if hit.refresh:  # XFetch: recompute before expiry, in the background (the request is parsed there)
            self._spawn(self._refresh_from_wire(wire))
        status = f"hit-{hit.tier}"
        outcome = InferOutcome(hit.payload + id_field_bytes(wire.scanned.request_id) + _STATUS_FIELDS[status], status)
        self._succeeded(counters, model, wire.version, status, wire.started)
        if not wire.scanned.model_version:
            split = self._splits.get(model)
            shadow = split.shadow_for(wire.version) if split is not None else None
            if shadow is not None:
                forward = wire.scanned.without_id(request_version_field(shadow.version))
                self._shadow(model, wire.version, shadow, forward, outcome.payload, wire.view.timeout_seconds)
        return outcome

    async def infer(
        self,
        request: pb.ModelInferRequest,
        *,
        raw_request: bytes | None = None,
        tenant: str = DEFAULT_TENANT,
        timeout: float | None = None,
        wire: WireLookup | None = None,
    ) -> InferOutcome:
        """Serve a parsed request. `raw_request` is its serialization when the front has it (forwarded as it is
        where no rewrite is needed); `wire` is its wire lookup that missed, whose entry the answer fills."""
        started = wire.started if wire is not None else time.perf_counter_ns()
        request_arrival.set(time.monotonic())
        tenant = wire.tenant if wire is not None else authenticated_tenant.get() or tenant
        model = request.model_name
        counters: ModelCounters | None = None
        resolved = ""  # the version label: "" until the version is one the model has
        try:
            if self.fault_delay:
                await asyncio.sleep(self.fault_delay)
            base = await self.model(model)
            named = request.model_version
            if named:
                version = named
            elif wire is not None and wire.version in base.versions:
                version = wire.version  # picked by the wire lookup: the same pick
            else:
                version = self._pick(model, base)
            if version not in base.versions:
                raise ModelNotFound(
                    f"model '{base.name}' has no version '{version}'; available: {', '.join(base.versions)}"
                )
            resolved = version
            # Validated against the resolved version's own metadata: a candidate may differ from the latest.
            view = base if version == base.version else await self.model(model, version)
            if wire is not None and (wire.view is not view or wire.version != version):
                wire = None  # the view changed since the lookup: the key names the other one
            if wire is None and raw_request is not None:
                # The view is fetched now: fill the wire entry too.
                wire = self.wire_lookup(raw_request, tenant, version)
            # Counted from here on: a routed model and a version its function has, so the table stays bounded.
            counters = self.statistics_table.counters(model, version)
            shadow = None
            if not named:
                split = self._splits.get(model)
                shadow = split.shadow_for(version) if split is not None else None
            outcome = await self._serve(request, raw_request, tenant, timeout, view, version, counters, wire, shadow)
        except BaseException as exc:  # a cancelled call (the client went away) is a failure too
            if counters is not None:
                self._failed(counters, model, resolved, started, exc)
            elif isinstance(exc, InferenceError):
                self.metrics.observe(model, resolved, exc.code.name, "bypass", (time.perf_counter_ns() - started) / 1e9)
            raise
        self._succeeded(counters, model, version, outcome.cache, started)
        return outcome

    def _succeeded(self, counters: ModelCounters, model: str, version: str, status: str, started: int) -> None:
        elapsed = time.perf_counter_ns() - started
        counters.success_count += 1
        counters.success_ns += elapsed
        counters.last_inference_ms = time.time_ns() // 1_000_000
        self.metrics.observe(model, version, "OK", status, elapsed / 1e9)

    def _failed(self, counters: ModelCounters, model: str, version: str, started: int, exc: BaseException) -> None:
        elapsed = time.perf_counter_ns() - started
        counters.fail_count += 1
        counters.fail_ns += elapsed
        counters.last_inference_ms = time.time_ns() // 1_000_000
        if isinstance(exc, InferenceError):
            self.metrics.observe(model, version, exc.code.name, "bypass", elapsed / 1e9)

    def _prepare(
        self,
        request: pb.ModelInferRequest,
        raw_request: bytes | None,
        timeout: float | None,
        view: ModelView,
        version: str,
        wire: WireLookup | None,
    ) -> _Prepared:
        """Validate against the view and compute what serving needs."""
        decoded, raw = decode_inputs(request, view.inputs)
        batch = batch_size(view.name, decoded, view.max_batch_size)
        requested_outputs(view.name, request, view.outputs)
        budget = timeout if timeout is not None else view.timeout_seconds
        scanned = wire.scanned if wire is not None else None
        forward = self._forward_bytes(request, raw_request, raw, decoded, version, scanned)
        use_cache = (
            self._cache is not None
            and self._key is not None
            and view.cache_enabled
            and uncacheable_reason(request) is None
        )
        return _Prepared(decoded, raw, batch, budget, forward, use_cache)

    async def _serve(
        self,
        request: pb.ModelInferRequest,
        raw_request: bytes | None,
        tenant: str,
        timeout: float | None,
        view: ModelView,
        version: str,
        counters: ModelCounters,
        wire: WireLookup | None,
        shadow: Shadow | None = None,
    ) -> InferOutcome:
        prepared = self._prepare(request, raw_request, timeout, view, version, wire)
        outcome = await self._serve_prepared(request, tenant, view, version, counters, wire, prepared)
        if shadow is not None:  # the reply is ready: the copy goes out after it, in the background
            forward = prepared.forward + request_version_field(shadow.version)
            self._shadow(view.name, version, shadow, forward, outcome.payload, prepared.budget)
        return outcome

    async def _serve_prepared(
        self,
        request: pb.ModelInferRequest,
        tenant: str,
        view: ModelView,
        version: str,
        counters: ModelCounters,
        wire: WireLookup | None,
        prepared: _Prepared,
    ) -> InferOutcome:
        raw, batch, budget, forward = prepared.raw, prepared.batch, prepared.budget, prepared.forward
        if not prepared.use_cache:
            payload = await self._call(view.name, version, forward, budget, counters, batch)
            counters.inference_count += batch
            return self._answer(request, self._body(raw, payload), "bypass")
        assert self._cache is not None and self._key is not None and self._flights is not None
        key = self._key(request, prepared.decoded, tenant, version)
        looked_up = time.perf_counter_ns()
        with self.tracing.child_span("cache.lookup", {"model": view.name}):
            hit = await self._cache.get(key)
        # The wire lookup that missed is part of this request's lookup.
        lookup_ns = time.perf_counter_ns() - looked_up + (wire.lookup_ns if wire is not None else 0)
        if hit is not None:
            counters.cache_hit_count += 1
            counters.cache_hit_ns += lookup_ns
            if hit.refresh:  # XFetch: recompute before expiry, in the background
                self._spawn(self._refresh(key, view, version, forward, budget, counters, batch, wire, raw))
            body = self._body(raw, hit.payload)
            # The wire entry lives no longer than the entry it copies (XFetch: only a call's entry knows its cost).
            # The canonical entry's cost comes along, so XFetch refreshes the copy early as it would the entry.
            self._fill_wire(wire, body, min(hit.ttl_seconds, view.cache_ttl_seconds), hit.compute_seconds)
            return self._answer(request, body, f"hit-{hit.tier}")
        # A miss from the lookup on; the caller whose call fills the entry adds the insert's ns.
        counters.cache_miss_count += 1
        counters.cache_miss_ns += lookup_ns
        flight_started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(budget):
                payload, shared = await self._flights.do(
                    key, lambda: self._call_and_store(key, view, version, forward, budget, counters, batch)
                )
        except TimeoutError:
            raise DeadlineExceeded(
                f"model '{view.name}': no result within {budget * 1000:.0f} ms (waiting for an identical request)"
            ) from None
        counters.inference_count += batch
        body = self._body(raw, payload)
        if not shared:  # the caller that made the call fills its wire entry too, with what the call cost
            self._fill_wire(wire, body, view.cache_ttl_seconds, (time.perf_counter_ns() - flight_started) / 1e9)
        return self._answer(request, body, "coalesced" if shared else "miss")

    def _fill_wire(self, wire: WireLookup | None, body: bytes, ttl_seconds: float, compute_seconds: float) -> None:
        if wire is not None and self._wire_cache is not None:
            self._wire_cache.put(wire.key, body, ttl_seconds, compute_seconds)

    @staticmethod
    def _forward_bytes(
        request: pb.ModelInferRequest,
        raw_request: bytes | None,
        raw: bool,
        decoded: dict[str, Array],
        version: str,
        scanned: ScannedInferRequest | None,
    ) -> bytes:
        """The request as sent to a function: raw tensors, the resolved version, no id.

        Without the caller's id the function's reply can be cached and shared;
        the id goes back on at the end. A raw request's bytes go as they came, less
        their id fields, with the resolved version appended when it had none (a
        later scalar wins): no protobuf is built.
        """
        if raw and raw_request is not None:
            if scanned is None:
                scanned = scan_infer_request(raw_request)
            if scanned is not None:
                suffix = request_version_field(version) if scanned.model_version != version else b""
                return scanned.without_id(suffix)
        forward = pb.ModelInferRequest()
        forward.CopyFrom(request)
        forward.id = ""
        forward.model_version = version
        if not raw:
            for tensor in forward.inputs:
                tensor.ClearField("contents")
                forward.raw_input_contents.append(raw_bytes(decoded[tensor.name], tensor.datatype))
        return forward.SerializeToString()

    async def _call(
        self, model: str, version: str, forward: bytes, timeout: float, counters: ModelCounters, batch: int
    ) -> bytes:
        started = time.perf_counter_ns()
        code = "OK"
        try:
            with self.tracing.child_span("function.call", {"model": model, "version": version}, client=True):
                reply = await self.backend.infer(model, version, forward, timeout, self.tracing.outgoing_metadata())
            counters.execution(batch, time.perf_counter_ns() - started)
            return reply
        except BackendError as exc:
            code = exc.code.name
            if exc.code.name == "NOT_FOUND":
                # A version went away: fetch metadata again.
                self._views.pop((model, ""), None)
                self._views.pop((model, version), None)
            raise
        finally:
            self.metrics.function_call(model, version, code, (time.perf_counter_ns() - started) / 1e9)

    # -- shadow traffic ----------------------------------------------------------------------

    def _shadow(self, model: str, baseline: str, shadow: Shadow, forward: bytes, reply: bytes, timeout: float) -> None:
        """Send `forward` (already naming the shadow's version) to the shadow version in the background and
        compare its answer with `reply`, the caller's; at most MAX_SHADOWS_IN_FLIGHT at once, the rest dropped."""
        if len(self._shadows) >= MAX_SHADOWS_IN_FLIGHT:
            self.metrics.shadow(model, baseline, shadow.version, "dropped")
            return
        call = self._shadow_call(model, baseline, shadow, forward, reply, timeout)
        task = asyncio.get_running_loop().create_task(call)
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow_call(
        self, model: str, baseline: str, shadow: Shadow, forward: bytes, reply: bytes, timeout: float
    ) -> None:
        # Not counted in the request's statistics or metrics; a fresh arrival, so a cold start it waits on is its own.
        request_arrival.set(time.monotonic())
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                try:
                    answer = await self.backend.infer(model, shadow.version, forward, timeout, ())
                finally:
                    self.metrics.shadow_call(model, shadow.version, time.perf_counter() - started)
        except (InferenceError, TimeoutError) as exc:
            log.debug("shadow call of %s version %s failed: %s", model, shadow.version, exc)
            result = ERROR
        except Exception:  # a bug must not end as an unretrieved task exception: count it, say where
            log.exception("shadow call of %s version %s", model, shadow.version)
            result = ERROR
        else:
            result = compare_replies(reply, answer, shadow.atol, shadow.rtol)
        self.metrics.shadow(model, baseline, shadow.version, result)

    def _traffic_weights(self) -> Iterator[tuple[str, str, int]]:
        """GATEWAY_TRAFFIC_WEIGHT at scrape time: each routed model's policy weights, else 100 to its latest."""
        defaults = {m: v.version for (m, ver), v in self._views.items() if not ver}
        return effective_weights(self.traffic, self.backend.models(), defaults)

    async def _call_and_store(
        self,
        key: bytes,
        view: ModelView,
        version: str,
        forward: bytes,
        timeout: float,
        counters: ModelCounters,
        batch: int,
        *,
        miss: bool = True,
    ) -> bytes:
        started = time.perf_counter_ns()
        payload = await self._call(view.name, version, forward, timeout, counters, batch)
        assert self._cache is not None
        stored = time.perf_counter_ns()
        self._cache.put(key, payload, view.cache_ttl_seconds, (stored - started) / 1e9)
        if miss:  # Triton's cache_miss time: the lookup (counted by the caller) plus the insert
            counters.cache_miss_ns += time.perf_counter_ns() - stored
        return payload

    async def _refresh(
        self,
        key: bytes,
        view: ModelView,
        version: str,
        forward: bytes,
        timeout: float,
        counters: ModelCounters,
        batch: int,
        wire: WireLookup | None = None,
        raw: bool = True,
    ) -> None:
        assert self._flights is not None
        started = time.perf_counter_ns()
        try:
            payload, shared = await self._flights.do(
                key, lambda: self._call_and_store(key, view, version, forward, timeout, counters, batch, miss=False)
            )
        except InferenceError as exc:
            log.debug("early refresh of %s failed: %s", view.name, exc.message)
            return
        if not shared:
            self._fill_wire(
                wire, self._body(raw, payload), view.cache_ttl_seconds, (time.perf_counter_ns() - started) / 1e9
            )

    async def _refresh_from_wire(self, wire: WireLookup) -> None:
        """XFetch said a wire entry nears its end: parse the request now, off the hit's path, and refresh the
        canonical entry and this wire entry together."""
        try:
            request = pb.ModelInferRequest.FromString(wire.scanned.data)
            view, version = wire.view, wire.version
            prepared = self._prepare(request, wire.scanned.data, None, view, version, wire)
        except (DecodeError, InferenceError) as exc:  # it was served before, so neither is expected
            log.debug("early refresh of %s from its wire entry failed: %s", wire.view.name, exc)
            return
        if not prepared.use_cache:
            return
        assert self._key is not None
        key = self._key(request, prepared.decoded, wire.tenant, version)
        counters = self.statistics_table.counters(view.name, version)
        await self._refresh(
            key, view, version, prepared.forward, prepared.budget, counters, prepared.batch, wire, prepared.raw
        )

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    def _body(raw: bool, payload: bytes) -> bytes:
        """The reply in the request's form, without id or cache status (what a wire entry holds): a raw request
        gets the function's raw reply; a typed one a typed reply, decoded and re-encoded."""
        if raw:
            return payload
        source = pb.ModelInferResponse.FromString(payload)
        reply = pb.ModelInferResponse(model_name=source.model_name, model_version=source.model_version)
        encode_outputs(reply, list(output_arrays(source).items()), raw=False)
        return reply.SerializeToString()

    @staticmethod
    def _answer(request: pb.ModelInferRequest, body: bytes, status: str) -> InferOutcome:
        return InferOutcome(body + id_field(request.id) + _STATUS_FIELDS[status], status)

    async def close(self) -> None:
        tasks = [*self._background, *self._shadows]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def region_metadata(region: str, cache: str | None) -> Sequence[tuple[str, str]]:
    items = [("x-edgeinfer-region", region)]
    if cache is not None:
        items.append(("x-edgeinfer-cache", cache))
    return tuple(items)
