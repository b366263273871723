"""OpenTelemetry spans that continue and propagate the W3C trace context carried in gRPC metadata.

Spans exist only when an exporter is configured; otherwise the hot path pays
one boolean test.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")


class Tracing:
    def __init__(self, exporter: str = "none", output: IO[str] | None = None, service: str = "edgeinfer") -> None:
        self.enabled = exporter != "none"
        self._tracer: Any = None
        if not self.enabled:
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

    def server_span(
        self, name: str, metadata: Mapping[str, str] | None, attributes: Mapping[str, Any]
    ) -> AbstractContextManager[Any]:
        """A SERVER span whose parent is the caller's `traceparent`, if it sent one."""
        if not self.enabled:
            return nullcontext()
        return self._span(name, metadata or {}, attributes, trace.SpanKind.SERVER)

    def child_span(self, name: str, attributes: Mapping[str, Any], client: bool = False) -> AbstractContextManager[Any]:
        """A span nested in the current one (CLIENT kind for outgoing calls)."""
        if not self.enabled:
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
        if self.enabled:
            self._provider.shutdown()
