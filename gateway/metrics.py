"""Prometheus metrics of a gateway; every series carries the region."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
CACHE_STATUSES = ("hit-l1", "hit-redis", "miss", "coalesced", "bypass")


class GatewayMetrics:
    def __init__(self, region: str, registry: CollectorRegistry | None = None) -> None:
        self.region = region
        self.registry = r = registry or CollectorRegistry()
        self.requests = Counter(
            "edgeinfer_gateway_requests",
            "Inference requests by outcome and cache status",
            ["region", "model", "code", "cache"],
            registry=r,
        )
        self.latency = Histogram(
            "edgeinfer_gateway_request_seconds",
            "Gateway time per inference request",
            ["region", "model", "cache"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.function_calls = Counter(
            "edgeinfer_gateway_function_calls",
            "Calls from the gateway to inference functions",
            ["region", "model", "code"],
            registry=r,
        )
        self.function_latency = Histogram(
            "edgeinfer_gateway_function_call_seconds",
            "Duration of calls to inference functions",
            ["region", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_events = Counter(
            "edgeinfer_gateway_cache_events",
            "Cache internals: errors, timeouts, breaker, drops, corrupt entries",
            ["region", "event"],
            registry=r,
        )
        self.cache_l1_bytes = Gauge(
            "edgeinfer_gateway_cache_l1_bytes", "Bytes held by the L1 cache", ["region"], registry=r
        )
        self.cache_breaker_open = Gauge(
            "edgeinfer_gateway_cache_breaker_open", "1 while the Redis circuit breaker is open", ["region"], registry=r
        )
        self.ready = Gauge("edgeinfer_gateway_ready", "1 while the gateway can serve", ["region"], registry=r)
        self._done: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}

    def observe(self, model: str, code: str, cache: str, seconds: float) -> None:
        children = self._done.get((model, code, cache))
        if children is None:  # label lookups once per combination, not per request
            children = (
                self.requests.labels(self.region, model, code, cache),
                self.latency.labels(self.region, model, cache),
            )
            self._done[(model, code, cache)] = children
        children[0].inc()
        children[1].observe(seconds)

    def function_call(self, model: str, code: str, seconds: float) -> None:
        self.function_calls.labels(self.region, model, code).inc()
        self.function_latency.labels(self.region, model).observe(seconds)

    def cache_event(self, event: str, count: int = 1) -> None:
        self.cache_events.labels(self.region, event).inc(count)
