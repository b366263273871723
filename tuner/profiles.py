"""What the tuner and the simulator know about a model: service time per batch size and the cold-start distribution.

The CPU profiles of the example models are measured on the 2-core development box (docs/benchmarks.md,
benchmarks/results/cold_start.json). The GPU profiles are stated assumptions for the 24-hour scenario of
docs/tuning.md: heavier models on a GPU, whose cold start builds a TensorRT engine unless a cached one exists.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

Z99 = 2.3263478740408408  # standard normal 0.99 quantile


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A log-normal distribution given by its median and 99th percentile (seconds)."""

    p50: float
    p99: float

    def __post_init__(self) -> None:
        if not 0 < self.p50 <= self.p99:
            raise ValueError(f"a cold-start distribution needs 0 < p50 <= p99, got p50={self.p50} p99={self.p99}")

    @property
    def sigma(self) -> float:
        return math.log(self.p99 / self.p50) / Z99

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return np.asarray(self.p50 * np.exp(self.sigma * rng.standard_normal(n)))


@dataclass(frozen=True, slots=True)
class ColdStart:
    """Spawn-to-ready time: with probability `cached` the fast mode (e.g. a cached TensorRT engine), else the slow."""

    fast: LogNormal
    slow: LogNormal | None = None
    cached: float = 1.0

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        out = self.fast.sample(rng, n)
        if self.slow is not None and self.cached < 1.0:
            slow = rng.random(n) >= self.cached
            out[slow] = self.slow.sample(rng, int(slow.sum()))
        return out

    def quantile(self, q: float, samples: int = 20_000) -> float:
        """The q-quantile, by sampling a fixed seed (exact for one log-normal, close for the mixture)."""
        values = self.sample(np.random.default_rng(12345), samples)
        return float(np.quantile(values, q))

    def mean(self, samples: int = 20_000) -> float:
        return float(self.sample(np.random.default_rng(12345), samples).mean())

    def describe(self) -> str:
        text = f"p50 {self.fast.p50:.2f}s / p99 {self.fast.p99:.2f}s"
        if self.slow is not None and self.cached < 1.0:
            text += (
                f", {100 * (1 - self.cached):.0f}% without a cached engine: p50 {self.slow.p50:.1f}s / "
                f"p99 {self.slow.p99:.1f}s"
            )
        return text


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """Service time of one instance: a batch of b requests takes batch_seconds(b); up to max_batch per batch."""

    name: str
    batch1_s: float  # one request alone
    max_batch: int = 1
    speedup: float = 1.0  # throughput at max_batch over throughput at batch 1
    service_cv2: float = 0.25  # squared coefficient of variation of service time
    cold_start: ColdStart = field(default_factory=lambda: ColdStart(LogNormal(0.71, 0.92)))

    def __post_init__(self) -> None:
        if self.batch1_s <= 0:
            raise ValueError(f"profile {self.name}: batch1_s must be positive")
        if self.max_batch < 1 or not 1.0 <= self.speedup <= self.max_batch:
            raise ValueError(f"profile {self.name}: need max_batch >= 1 and 1 <= speedup <= max_batch")

    def batch_seconds(self, batch: int) -> float:
        """Linear in the batch size, from batch1_s at 1 to max_batch·batch1_s/speedup at max_batch."""
        b = max(1, min(batch, self.max_batch))
        if self.max_batch == 1:
            return self.batch1_s
        full = self.max_batch * self.batch1_s / self.speedup
        return self.batch1_s + (full - self.batch1_s) * (b - 1) / (self.max_batch - 1)

    @property
    def kpa_target(self) -> float:
        """Knative `target` concurrency for this model: one full batch per instance."""
        return float(self.max_batch)


def _cpu_cold(p50: float, p99: float) -> ColdStart:
    return ColdStart(LogNormal(p50, p99))


def gpu_cold_start(cached: float = 0.5) -> ColdStart:
    """GPU instance: ~1 s with a cached TensorRT engine, ~9 s when it must build one."""
    return ColdStart(LogNormal(1.0, 1.6), LogNormal(9.0, 12.0), cached)


# Measured on this box: fraud ≈0.3 ms batch 1 (warm end-to-end p50 3.3 ms); ranker ≈4.5 ms batch 1, ~4x
# throughput with batching; spawn→ready p50/p99 0.71/0.92 s (fraud), 1.59/2.01 s (ranker).
CPU_PROFILES: dict[str, ModelProfile] = {
    "fraud": ModelProfile("fraud", 0.0003, max_batch=8, speedup=4.0, cold_start=_cpu_cold(0.71, 0.92)),
    "ranker": ModelProfile("ranker", 0.0045, max_batch=8, speedup=4.0, cold_start=_cpu_cold(1.59, 2.01)),
}

# Assumed GPU models of the 24-hour scenario (not measured here: no GPU on the development box).
GPU_PROFILES: dict[str, ModelProfile] = {
    # A vision model that does not batch: 25 ms per image, 40 images/s per instance at most.
    "vision": ModelProfile("vision", 0.025, max_batch=1, speedup=1.0, service_cv2=0.1, cold_start=gpu_cold_start()),
    # A cross-encoder reranker: 14 ms alone, 2x throughput at batch 4.
    "reranker": ModelProfile("reranker", 0.014, max_batch=4, speedup=2.0, cold_start=gpu_cold_start()),
    # A text embedder: 8 ms alone, 3x throughput at batch 8 (2.7 ms per request).
    "embedder": ModelProfile("embedder", 0.008, max_batch=8, speedup=3.0, cold_start=gpu_cold_start()),
}

ALL_PROFILES: dict[str, ModelProfile] = {**CPU_PROFILES, **GPU_PROFILES}


def profile_named(name: str) -> ModelProfile:
    try:
        return ALL_PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown model profile '{name}'; known: {', '.join(sorted(ALL_PROFILES))}") from None
