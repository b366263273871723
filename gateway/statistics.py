"""The gateway's own inference statistics, reported as Triton's ModelStatistics (extension_statistics.md).

Per model and resolved version, with Triton's meanings for what a gateway sees:

- success / fail: requests and the ns of the whole request at the gateway (cache hits included);
- inference_count: batch elements of successful requests that were not cache hits;
- execution_count: the function calls made (background refreshes too); batch_stats per batch size of those calls;
- compute_infer: counted per request as Triton counts it (every success that was not a cache hit, coalesced
  requests included, as requests batched into one execution are), with the ns of the function calls as the
  gateway observed them;
- cache_hit: hits and the ns of their lookups; cache_miss: misses and the ns of lookup plus insert;
- queue, compute_input and compute_output: counted as Triton counts them, 0 ns (the gateway has no queue and
  cannot see inside a function's compute).

The counters are plain ints on a slotted object, bumped on the event loop's thread: no locks, and nothing is
allocated per request (a batch size's entry once, the first time it is seen).
"""

from __future__ import annotations

from collections.abc import Iterable

from edgeinfer.functions.repository import version_key
from edgeinfer.protocol import open_inference_pb2 as pb


class BatchCounters:
    __slots__ = ("count", "ns")

    def __init__(self) -> None:
        self.count = 0
        self.ns = 0


class ModelCounters:
    """The counters of one model version; the data plane adds to the fields directly."""

    __slots__ = (
        "batches",
        "cache_hit_count",
        "cache_hit_ns",
        "cache_miss_count",
        "cache_miss_ns",
        "compute_ns",
        "execution_count",
        "fail_count",
        "fail_ns",
        "inference_count",
        "last_inference_ms",
        "success_count",
        "success_ns",
    )

    def __init__(self) -> None:
        self.inference_count = 0
        self.execution_count = 0
        self.last_inference_ms = 0
        self.success_count = 0
        self.success_ns = 0
        self.fail_count = 0
        self.fail_ns = 0
        self.cache_hit_count = 0
        self.cache_hit_ns = 0
        self.cache_miss_count = 0
        self.cache_miss_ns = 0
        self.compute_ns = 0
        # Bounded by the model's max_batch_size: the data plane validates a batch before it is counted.
        self.batches: dict[int, BatchCounters] = {}

    def execution(self, batch: int, ns: int) -> None:
        """One successful function call of `batch` elements that took `ns`."""
        self.execution_count += 1
        self.compute_ns += ns
        counters = self.batches.get(batch)
        if counters is None:
            counters = self.batches[batch] = BatchCounters()
        counters.count += 1
        counters.ns += ns

    def to_proto(self, name: str, version: str) -> pb.ModelStatistics:
        # Triton counts queue for every success, and the compute phases for every success that was not a hit.
        computed = self.success_count - self.cache_hit_count
        stats = pb.ModelStatistics(
            name=name,
            version=version,
            last_inference=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
            inference_stats=pb.InferStatistics(
                success=pb.StatisticDuration(count=self.success_count, ns=self.success_ns),
                fail=pb.StatisticDuration(count=self.fail_count, ns=self.fail_ns),
                queue=pb.StatisticDuration(count=self.success_count, ns=0),
                compute_input=pb.StatisticDuration(count=computed, ns=0),
                # perf_analyzer requires the three compute counts to be equal, as Triton keeps them.
                compute_infer=pb.StatisticDuration(count=computed, ns=self.compute_ns),
                compute_output=pb.StatisticDuration(count=computed, ns=0),
                cache_hit=pb.StatisticDuration(count=self.cache_hit_count, ns=self.cache_hit_ns),
                cache_miss=pb.StatisticDuration(count=self.cache_miss_count, ns=self.cache_miss_ns),
            ),
        )
        for size in sorted(self.batches):
            counters = self.batches[size]
            stats.batch_stats.append(
                pb.InferBatchStatistics(
                    batch_size=size,
                    compute_input=pb.StatisticDuration(count=counters.count, ns=0),
                    compute_infer=pb.StatisticDuration(count=counters.count, ns=counters.ns),
                    compute_output=pb.StatisticDuration(count=counters.count, ns=0),
                )
            )
        return stats


_EMPTY = ModelCounters()  # what a version with no requests reports; never written to


class GatewayStatistics:
    """ModelCounters per (model, version). Only the data plane creates entries, for models it routes and
    versions their functions report, so the table is bounded by what the gateway serves."""

    def __init__(self) -> None:
        self._models: dict[str, dict[str, ModelCounters]] = {}

    def counters(self, model: str, version: str) -> ModelCounters:
        # Two lookups instead of one with a (model, version) key: no tuple per request.
        versions = self._models.get(model)
        if versions is None:
            versions = self._models[model] = {}
        counters = versions.get(version)
        if counters is None:
            counters = versions[version] = ModelCounters()
        return counters

    def counted_versions(self, model: str) -> list[str]:
        return list(self._models.get(model, ()))

    def model_statistics(self, model: str, versions: Iterable[str]) -> list[pb.ModelStatistics]:
        """One entry per version, in version order; versions with no requests report zeros."""
        counted = self._models.get(model, {})
        return [
            counted.get(version, _EMPTY).to_proto(model, version) for version in sorted(set(versions), key=version_key)
        ]
