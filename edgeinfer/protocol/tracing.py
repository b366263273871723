"""OpenTelemetry spans that continue and propagate the W3C trace context carried in gRPC metadata.

Spans exist only when an exporter is configured; otherwise the hot path pays
one boolean test. With one, sampling can change at run time (Triton's TraceSetting, edgeinfer/runtime_settings.py):
tracing off (`enabled` false: one boolean test again), or one request in `rate` traced, up to `count` traces, for
all models or per model. The decision is a counter, taken once per request in server_span.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
# Set inside a request that sampling left out, so its child spans are left out too (not orphan roots).
_UNSAMPLED: ContextVar[bool] = ContextVar("edgeinfer_trace_unsampled", default=False)
TRACE_HEADERS = ("traceparent", "tracestate")


@dataclass(slots=True)
class Sampling:
    """One scope's sampling (all models, or one): traced or not, one request in `rate`, `remaining` traces left
    (-1: unlimited)."""

    on: bool = True
    rate: int = 1
    remaining: int = -1
    seen: int = 0

    def take(self) -> bool:
        """Whether this request is traced; counts it."""
        if not self.on or self.remaining == 0:
            return False
        if self.rate > 1:
            self.seen += 1
            if self.seen < self.rate:
                return False
            self.seen = 0
        if self.remaining > 0:
            self.remaining -= 1
        return True


@contextmanager
def _unsampled() -> Iterator[None]:
    token = _UNSAMPLED.set(True)
    try:
        yield
    finally:
        _UNSAMPLED.reset(token)


class Tracing:
    def __init__(self, exporter: str = "none", output: IO[str] | None = None, service: str = "edgeinfer") -> None:
        # An exporter is configured: spans can exist. `enabled` says whether any scope samples now (the hot test).
        self.exporting = exporter != "none"
        self.enabled = self.exporting
        self.sampling = Sampling(on=self.exporting)
        # Per-model sampling where a model's settings differ from the global ones (bounded by runtime_settings).
        self.model_sampling: dict[str, Sampling] = {}
        self._tracer: Any = None
        if not self.exporting:
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        span_exporter: SpanExporter
        if exporter == "console":
            span_exporter = ConsoleSpanExporter(
                out=output or sys.stderr, formatter=lambda span: span.to_json(indent=None) + "\n"
            )
        elif exporter == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise SystemExit("--trace otlp needs `pip install opentelemetry-exporter-otlp-proto-grpc`") from exc
            span_exporter = OTLPSpanExporter()
        else:
            raise SystemExit(f"unknown trace exporter '{exporter}': use none, console or otlp")
        provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=200))
        self._provider = provider
        self._tracer = provider.get_tracer(service)

    def set_sampling(self, model: str, sampling: Sampling | None) -> None:
        """Replace the sampling of all models (model "") or of one (None: it follows the global one again)."""
        if not model:
            self.sampling = sampling or Sampling(on=False)
        elif sampling is None:
            self.model_sampling.pop(model, None)
        else:
            self.model_sampling[model] = sampling
        self.enabled = self.exporting and (self.sampling.on or any(s.on for s in self.model_sampling.values()))

    def server_span(
        self, name: str, metadata: Mapping[str, str] | None, attributes: Mapping[str, Any]
    ) -> AbstractContextManager[Any]:
        """A SERVER span whose parent is the caller's `traceparent`, if it sent one, for the requests sampled
        (attributes["model"] picks a model's own sampling)."""
        if not self.enabled:
            return nullcontext()
        sampling = self.sampling
        if self.model_sampling:
            sampling = self.model_sampling.get(attributes.get("model", ""), sampling)
        if not sampling.take():
            return _unsampled()
        return self._span(name, metadata or {}, attributes, trace.SpanKind.SERVER)

    def child_span(self, name: str, attributes: Mapping[str, Any], client: bool = False) -> AbstractContextManager[Any]:
        """A span nested in the current one (CLIENT kind for outgoing calls); none if the request is not sampled."""
        if not self.enabled or _UNSAMPLED.get():
            return nullcontext()
        kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
        return self._tracer.start_as_current_span(name, kind=kind, attributes=dict(attributes))  # type: ignore[no-any-return]

    def outgoing_metadata(self) -> Sequence[tuple[str, str]]:
        """The current span's context as gRPC metadata for a downstream call."""
        if not self.enabled:
            return ()
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        return tuple(carrier.items())

    @contextmanager
    def _span(
        self, name: str, metadata: Mapping[str, str], attributes: Mapping[str, Any], kind: trace.SpanKind
    ) -> Iterator[Any]:
        parent = _PROPAGATOR.extract(carrier=metadata) if "traceparent" in metadata else None
        with self._tracer.start_as_current_span(name, context=parent, kind=kind, attributes=dict(attributes)) as span:
            yield span

    def shutdown(self) -> None:
        if self.exporting:
            self._provider.shutdown()
