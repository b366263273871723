"""OpenTelemetry for functions: one span per request, continuing the caller's W3C traceparent."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Any

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """Spans only when an exporter is configured; otherwise the hot path pays nothing."""

    def __init__(self, exporter: str = "none", output: IO[str] | None = None, service: str = "edgeinfer-function"):
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
            out = output or sys.stderr
            span_exporter = ConsoleSpanExporter(
                out=out, formatter=lambda span: span.to_json(indent=None) + "\n"
            )
        elif exporter == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            except ImportError as exc:
                raise SystemExit(
                    "--trace otlp needs `pip install opentelemetry-exporter-otlp-proto-grpc`"
                ) from exc
            span_exporter = OTLPSpanExporter()
        else:
            raise SystemExit(f"unknown trace exporter '{exporter}': use none, console or otlp")
        provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=200))
        self._provider = provider
        self._tracer = provider.get_tracer("edgeinfer.functions")

    def span(
        self, name: str, metadata: Mapping[str, str] | None, attributes: Mapping[str, Any]
    ) -> AbstractContextManager[Any]:
        if not self.enabled:
            return nullcontext()
        return self._span(name, metadata or {}, attributes)

    @contextmanager
    def _span(self, name: str, metadata: Mapping[str, str], attributes: Mapping[str, Any]) -> Iterator[Any]:
        parent = _PROPAGATOR.extract(carrier=metadata) if "traceparent" in metadata else None
        with self._tracer.start_as_current_span(
            name, context=parent, kind=trace.SpanKind.SERVER, attributes=dict(attributes)
        ) as span:
            yield span

    def shutdown(self) -> None:
        if self.enabled:
            self._provider.shutdown()
