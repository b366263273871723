"""Prometheus metrics of a gateway; every series carries the region."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from edgeinfer.cache.stats import CacheStats
from edgeinfer.metrics import CounterCell, FastCounter, FastHistogram, HistogramCell

# Metric names as Prometheus exposes them (counters with their "_total"; histograms are
# family names, read as <name>_bucket/_count/_sum). Readers import these, never retype them.
GATEWAY_REQUESTS = "edgeinfer_gateway_requests_total"
GATEWAY_REQUEST_SECONDS = "edgeinfer_gateway_request_seconds"
GATEWAY_FUNCTION_CALLS = "edgeinfer_gateway_function_calls_total"
GATEWAY_FUNCTION_CALL_SECONDS = "edgeinfer_gateway_function_call_seconds"
GATEWAY_AUTH = "edgeinfer_gateway_auth_total"
GATEWAY_READY = "edgeinfer_gateway_ready"
GATEWAY_COLD_START_SECONDS = "edgeinfer_gateway_cold_start_seconds"
GATEWAY_COLD_START_WAITS = "edgeinfer_gateway_cold_start_waits_total"
GATEWAY_INSTANCES = "edgeinfer_gateway_instances"
GATEWAY_INSTANCE_CRASHES = "edgeinfer_gateway_instance_crashes_total"
GATEWAY_DESIRED_INSTANCES = "edgeinfer_gateway_desired_instances"
GATEWAY_AUTOSCALER_PANIC = "edgeinfer_gateway_autoscaler_panic"
GATEWAY_CACHE_EVENTS = "edgeinfer_gateway_cache_events_total"
GATEWAY_CACHE_L1_BYTES = "edgeinfer_gateway_cache_l1_bytes"
GATEWAY_CACHE_L1_ENTRIES = "edgeinfer_gateway_cache_l1_entries"
GATEWAY_CACHE_PENDING_WRITES = "edgeinfer_gateway_cache_pending_writes"
GATEWAY_CACHE_BREAKER_OPEN = "edgeinfer_gateway_cache_breaker_open"
# Progressive delivery (gateway/traffic.py): shadow copies compared with the caller's reply, and each version's
# share of unversioned requests.
GATEWAY_SHADOW_COMPARISONS = "edgeinfer_gateway_shadow_comparisons_total"
GATEWAY_SHADOW_SECONDS = "edgeinfer_gateway_shadow_seconds"
GATEWAY_TRAFFIC_WEIGHT = "edgeinfer_gateway_traffic_weight"
SHADOW_RESULTS = ("agree", "disagree", "error", "dropped")

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
_COLD_START_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
CACHE_STATUSES = ("hit-l1", "hit-redis", "miss", "coalesced", "bypass")


class GatewayMetrics:
    def __init__(self, region: str, registry: CollectorRegistry | None = None) -> None:
        self.region = region
        self.registry = r = registry or CollectorRegistry()
        # Per-request series: the cheap hot-path kind (edgeinfer.metrics). `version` is the version that served the
        # request ("" when none was resolved: an unknown model or version), so a canary is measured apart.
        self.requests = FastCounter(
            GATEWAY_REQUESTS,
            "Inference requests by outcome and cache status",
            ["region", "model", "version", "code", "cache"],
            r,
        )
        self.latency = FastHistogram(
            GATEWAY_REQUEST_SECONDS,
            "Gateway time per inference request",
            ["region", "model", "version", "cache"],
            r,
            _LATENCY_BUCKETS,
        )
        self.function_calls = FastCounter(
            GATEWAY_FUNCTION_CALLS,
            "Calls from the gateway to inference functions",
            ["region", "model", "version", "code"],
            r,
        )
        self.function_latency = FastHistogram(
            GATEWAY_FUNCTION_CALL_SECONDS,
            "Duration of calls to inference functions",
            ["region", "model", "version"],
            r,
            _LATENCY_BUCKETS,
        )
        # A shadow copy's own latency: nobody cancels it (a caller's slow try can be, by Envoy's hedge), so a
        # slow candidate shows here before any caller is sent to it.
        self.shadow_latency = FastHistogram(
            GATEWAY_SHADOW_SECONDS,
            "Duration of shadow copies to a candidate version (answered or failed)",
            ["region", "model", "version"],
            r,
            _LATENCY_BUCKETS,
        )
        self.shadow_comparisons = FastCounter(
            GATEWAY_SHADOW_COMPARISONS,
            "Shadow copies of requests sent to a candidate version: its answer compared with the baseline's reply "
            "(agree, disagree), or error, or dropped (too many in flight)",
            ["region", "model", "baseline", "version", "result"],
            r,
        )
        # Read at scrape time from the traffic policies (set by the data plane): (model, version, percent).
        self.traffic_weights: Callable[[], Iterable[tuple[str, str, int]]] = lambda: ()
        r.register(_TrafficCollector(self))
        self.auth = FastCounter(
            GATEWAY_AUTH,
            "API-key checks: admitted or rate_limited per tenant; refused keys (tenant empty) by reason",
            ["region", "tenant", "outcome"],
            r,
        )
        self.ready = Gauge(GATEWAY_READY, "1 while the gateway can serve", ["region"], registry=r)
        # The local pool (backend `local`): Knative's scale-to-zero, measured.
        self.cold_starts = Histogram(
            GATEWAY_COLD_START_SECONDS,
            "Function instance spawn to ready",
            ["region", "model"],
            buckets=_COLD_START_BUCKETS,
            registry=r,
        )
        self.cold_start_waits = Counter(
            GATEWAY_COLD_START_WAITS,
            "Requests that waited on a cold start",
            ["region", "model"],
            registry=r,
        )
        self.instance_count = Gauge(
            GATEWAY_INSTANCES, "Function instances by state", ["region", "model", "state"], registry=r
        )
        self.instance_crashes = Counter(
            GATEWAY_INSTANCE_CRASHES,
            "Function instances that exited unexpectedly",
            ["region", "model"],
            registry=r,
        )
        self.desired_instances = Gauge(
            GATEWAY_DESIRED_INSTANCES, "The autoscaler's last decision", ["region", "model"], registry=r
        )
        self.panic = Gauge(GATEWAY_AUTOSCALER_PANIC, "1 while in panic mode", ["region", "model"], registry=r)
        self._done: dict[tuple[str, str, str, str], tuple[CounterCell, HistogramCell]] = {}
        self._calls: dict[tuple[str, str, str], tuple[CounterCell, HistogramCell]] = {}

    def observe(self, model: str, version: str, code: str, cache: str, seconds: float) -> None:
        children = self._done.get((model, version, code, cache))
        if children is None:  # label lookups once per combination, not per request
            children = (
                self.requests.labels(self.region, model, version, code, cache),
                self.latency.labels(self.region, model, version, cache),
            )
            self._done[(model, version, code, cache)] = children
        children[0].inc()
        children[1].observe(seconds)

    def auth_outcome(self, tenant: str, outcome: str) -> None:
        # Bounded: tenants come from the keys file, outcomes from a fixed set.
        self.auth.labels(self.region, tenant, outcome).inc()

    def function_call(self, model: str, version: str, code: str, seconds: float) -> None:
        children = self._calls.get((model, version, code))
        if children is None:
            children = (
                self.function_calls.labels(self.region, model, version, code),
                self.function_latency.labels(self.region, model, version),
            )
            self._calls[(model, version, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def shadow_call(self, model: str, version: str, seconds: float) -> None:
        self.shadow_latency.labels(self.region, model, version).observe(seconds)

    def shadow(self, model: str, baseline: str, version: str, result: str) -> None:
        # Bounded: versions the model has (the policy is checked against them), results from SHADOW_RESULTS.
        self.shadow_comparisons.labels(self.region, model, baseline, version, result).inc()

    def cold_start(self, model: str, seconds: float) -> None:
        self.cold_starts.labels(self.region, model).observe(seconds)

    def cold_start_wait(self, model: str) -> None:
        self.cold_start_waits.labels(self.region, model).inc()

    def instances(self, model: str, state: str, count: int) -> None:
        self.instance_count.labels(self.region, model, state).set(count)

    def instance_crash(self, model: str) -> None:
        self.instance_crashes.labels(self.region, model).inc()

    def desired(self, model: str, count: int, panic: bool) -> None:
        self.desired_instances.labels(self.region, model).set(count)
        self.panic.labels(self.region, model).set(1 if panic else 0)

    def watch_cache(self, stats: Callable[[], CacheStats]) -> None:
        """Export the cache's own counters, read at scrape time (the hot path only bumps integers)."""
        self.registry.register(_CacheCollector(self.region, stats))


class _TrafficCollector(Collector):
    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            GATEWAY_TRAFFIC_WEIGHT,
            "Percent of the model's unversioned requests each version gets, from the traffic policy",
            labels=["region", "model", "version"],
        )
        for model, version, percent in self._metrics.traffic_weights():
            gauge.add_metric([self._metrics.region, model, version], percent)
        yield gauge


# CacheStats fields that are gauges; every other integer field is a counter, exported as
# GATEWAY_CACHE_EVENTS{event=<field>}.
_CACHE_GAUGES = frozenset({"l1_bytes", "l1_entries", "pending_writes", "redis_connections"})


class _CacheCollector(Collector):
    def __init__(self, region: str, stats: Callable[[], CacheStats]) -> None:
        self._region = region
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        snapshot = self._stats()
        events = CounterMetricFamily(
            GATEWAY_CACHE_EVENTS,
            "Cache internals: tiers, Redis errors and timeouts, breaker, drops",
            labels=["region", "event"],
        )
        for field in dataclasses.fields(snapshot):
            value = getattr(snapshot, field.name)
            if field.name not in _CACHE_GAUGES and isinstance(value, int):
                events.add_metric([self._region, field.name], value)
        yield events
        for name, help_text, value in (
            (GATEWAY_CACHE_L1_BYTES, "Bytes held by the L1 cache", snapshot.l1_bytes),
            (GATEWAY_CACHE_L1_ENTRIES, "Entries held by the L1 cache", snapshot.l1_entries),
            (GATEWAY_CACHE_PENDING_WRITES, "Redis writes in flight", snapshot.pending_writes),
            (
                GATEWAY_CACHE_BREAKER_OPEN,
                "1 while the Redis circuit breaker is open",
                1 if snapshot.breaker_state == "open" else 0,
            ),
        ):
            gauge = GaugeMetricFamily(name, help_text, labels=["region"])
            gauge.add_metric([self._region], value)
            yield gauge
