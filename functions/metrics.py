"""Prometheus metrics of a function process (scraped from --metrics-port)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Gauge, Histogram

from edgeinfer.functions.batching import BatchStats
from edgeinfer.metrics import CounterCell, FastCounter, FastHistogram, HistogramCell

# Metric names as Prometheus exposes them (counters with their "_total"; histograms are
# family names, read as <name>_bucket/_count/_sum). Readers import these, never retype them.
FUNCTION_REQUESTS = "edgeinfer_function_requests_total"
FUNCTION_REQUEST_FAILURES = "edgeinfer_function_request_failures_total"
FUNCTION_REQUEST_SECONDS = "edgeinfer_function_request_seconds"
FUNCTION_QUEUE_SECONDS = "edgeinfer_function_queue_seconds"
FUNCTION_COMPUTE_SECONDS = "edgeinfer_function_compute_seconds"
FUNCTION_BATCH_SIZE = "edgeinfer_function_batch_size"
FUNCTION_COLD_START_SECONDS = "edgeinfer_function_cold_start_seconds"
FUNCTION_MODEL_LOAD_SECONDS = "edgeinfer_function_model_load_seconds"
# The cold start by phase (gauge, seconds): model "" phase "process" (process start, imports included, to the first
# load) and "ready" (process start to ready); per model (its latest version) its runtime's phases: torch_import,
# cuda_context, load, capture (CUDA graphs), warmup.
FUNCTION_START_PHASE_SECONDS = "edgeinfer_function_start_phase_seconds"
FUNCTION_READY = "edgeinfer_function_ready"

_LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
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
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_COLD_START_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)


class FunctionMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = FastCounter(FUNCTION_REQUESTS, "Inference requests by outcome", ["model", "code"], r)
        self.failures = FastCounter(FUNCTION_REQUEST_FAILURES, "Failed inference requests", ["model", "code"], r)
        self.latency = FastHistogram(
            FUNCTION_REQUEST_SECONDS,
            "Time from a decoded request to its answer or error (the server's own share of the latency), by outcome",
            ["model", "code"],
            r,
            _LATENCY_BUCKETS,
        )
        self.queue = FastHistogram(FUNCTION_QUEUE_SECONDS, "Time waiting for a batch", ["model"], r, _LATENCY_BUCKETS)
        self.compute = FastHistogram(
            FUNCTION_COMPUTE_SECONDS, "Model run time per batch (ONNX Runtime, PyTorch)", ["model"], r, _LATENCY_BUCKETS
        )
        self.batch_size = FastHistogram(FUNCTION_BATCH_SIZE, "Rows per executed batch", ["model"], r, _BATCH_BUCKETS)
        self.cold_start = Histogram(
            FUNCTION_COLD_START_SECONDS,
            "Process start to ready",
            buckets=_COLD_START_BUCKETS,
            registry=r,
        )
        self.model_load = Gauge(FUNCTION_MODEL_LOAD_SECONDS, "Load plus warm-up time per model", ["model"], registry=r)
        self.start_phase = Gauge(
            FUNCTION_START_PHASE_SECONDS,
            "Cold start by phase: process (start to first load), ready (start to ready), and each model's own "
            "(torch_import, cuda_context, load, capture, warmup)",
            ["model", "phase"],
            registry=r,
        )
        self.ready = Gauge(FUNCTION_READY, "1 once every model is warm", registry=r)

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(self, model)


@dataclass
class ModelMetrics:
    """Label children bound once per model, so the hot path skips label lookups."""

    parent: FunctionMetrics
    model: str
    _ok: CounterCell = field(init=False)
    _ok_latency: HistogramCell = field(init=False)
    _queue: HistogramCell = field(init=False)
    _compute: HistogramCell = field(init=False)
    _batch: HistogramCell = field(init=False)

    def __post_init__(self) -> None:
        self._ok = self.parent.requests.labels(self.model, "OK")
        self._ok_latency = self.parent.latency.labels(self.model, "OK")
        self._queue = self.parent.queue.labels(self.model)
        self._compute = self.parent.compute.labels(self.model)
        self._batch = self.parent.batch_size.labels(self.model)

    def succeeded(self, seconds: float) -> None:
        self._ok.inc()
        self._ok_latency.observe(seconds)

    def failed(self, code: str, seconds: float) -> None:
        self.parent.requests.labels(self.model, code).inc()
        self.parent.failures.labels(self.model, code).inc()
        self.parent.latency.labels(self.model, code).observe(seconds)

    def batch(self, stats: BatchStats) -> None:
        self._compute.observe(stats.compute_seconds)
        self._batch.observe(stats.size)
        for wait in stats.queue_seconds:
            self._queue.observe(wait)
