"""Prometheus counters and histograms cheap enough for a per-request hot path.

prometheus_client's own take a lock and do several calls per observation
(about 5 µs each here). These keep plain Python numbers, updated from the
event loop only, and turn them into metric families when scraped.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry


class CounterCell:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class HistogramCell:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class _Family(Collector):
    def __init__(self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = tuple(labels)
        registry.register(self)


class FastCounter(_Family):
    def __init__(self, name: str, documentation: str, labels: Sequence[str], registry: CollectorRegistry) -> None:
        self._cells: dict[tuple[str, ...], CounterCell] = {}
        super().__init__(name, documentation, labels, registry)

    def labels(self, *values: str) -> CounterCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = CounterCell()
        return cell

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.label_names)
        for values, cell in list(self._cells.items()):
            family.add_metric(list(values), cell.value)
        yield family


class FastHistogram(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        registry: CollectorRegistry,
        buckets: Sequence[float],
    ) -> None:
        self.bounds = tuple(sorted(buckets))
        self._cells: dict[tuple[str, ...], HistogramCell] = {}
        super().__init__(name, documentation, labels, registry)

    def labels(self, *values: str) -> HistogramCell:
        cell = self._cells.get(values)
        if cell is None:
            cell = self._cells[values] = HistogramCell(self.bounds)
        return cell

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)
        for values, cell in list(self._cells.items()):
            counts = list(cell.counts)
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(cumulative)))
            family.add_metric(list(values), buckets, sum_value=cell.sum)
        yield family


def quantile_from_buckets(q: float, buckets: Sequence[tuple[float, float]]) -> tuple[float | None, bool]:
    """Estimate the q-quantile from cumulative histogram buckets [(upper bound, count)], as Prometheus's
    histogram_quantile does: linear interpolation inside the bucket that holds the rank.

    Returns (estimate, above): `above` is True when the rank falls in the +Inf bucket, and the estimate is
    then the highest finite bound (the truth is somewhere above it). (None, False) without observations.
    """
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None, False
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower, True
            if count == below:
                return bound, False
            return lower + (bound - lower) * (rank - below) / (count - below), False
        lower, below = bound, count
    return lower, True
