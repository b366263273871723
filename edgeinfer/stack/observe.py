"""What `edgeinfer status` reads from a gateway's admin port (gateway/admin_client.py): per-model figures from
its Prometheus metrics and its pool of function instances (/v1/pools)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from edgeinfer.gateway.metrics import GATEWAY_COLD_START_SECONDS, GATEWAY_REQUEST_SECONDS, GATEWAY_REQUESTS
from edgeinfer.metrics import quantile_from_buckets

REQUESTS = GATEWAY_REQUESTS
LATENCY_BUCKET = GATEWAY_REQUEST_SECONDS + "_bucket"
COLD_STARTS = GATEWAY_COLD_START_SECONDS + "_count"
HIT_STATUSES = frozenset({"hit-l1", "hit-redis"})


@dataclass
class ModelFigures:
    warm: int = 0  # ready instances
    starting: int = 0
    cold_starts: int = 0
    requests: int = 0  # every code
    ok: int = 0
    hits: int = 0
    # upper bound -> cumulative count, summed over cache statuses
    latency_buckets: dict[float, float] = field(default_factory=dict)

    @property
    def hit_ratio(self) -> float | None:
        return self.hits / self.ok if self.ok else None

    def p99(self) -> tuple[float | None, bool]:
        return quantile_from_buckets(0.99, list(self.latency_buckets.items()))

    def as_dict(self) -> dict[str, Any]:
        p99, above = self.p99()
        return {
            "warm": self.warm,
            "starting": self.starting,
            "cold_starts": self.cold_starts,
            "requests": self.requests,
            "ok": self.ok,
            "hits": self.hits,
            "hit_ratio": self.hit_ratio,
            "p99_seconds_estimated": None if p99 is None else round(p99, 6),
            "p99_above_largest_bucket": above,
        }


def model_figures(metrics_text: str | None, pools: Mapping[str, Any] | None) -> dict[str, ModelFigures]:
    """Per-model figures from a gateway's /metrics text and its /v1/pools `pools` object (either may be None)."""
    models: dict[str, ModelFigures] = defaultdict(ModelFigures)
    for name, pool in (pools or {}).items():
        models[name].warm = int(pool.get("ready") or 0)
        models[name].starting = int(pool.get("starting") or 0)
    if metrics_text:
        for family in text_string_to_metric_families(metrics_text):
            for sample in family.samples:
                model = sample.labels.get("model")
                if model is None:
                    continue
                if sample.name == REQUESTS:
                    figures = models[model]
                    count = int(sample.value)
                    figures.requests += count
                    if sample.labels.get("code") == "OK":
                        figures.ok += count
                        if sample.labels.get("cache") in HIT_STATUSES:
                            figures.hits += count
                elif sample.name == COLD_STARTS:
                    models[model].cold_starts += int(sample.value)
                elif sample.name == LATENCY_BUCKET:
                    bound = float(sample.labels["le"])
                    buckets = models[model].latency_buckets
                    buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return dict(sorted(models.items()))
