"""Triton's per-model-version inference statistics (the statistics extension), as plain counters.

Meanings follow Triton's docs/protocol/extension_statistics.md:
- inference_count: successful inferences, each batch element counted once; execution_count: batches run;
- success / fail: requests, each with its time from arrival (decoded) to its reply or error;
- queue: each request's wait from arrival at the batcher to the start of its batch;
- compute_input / compute_infer / compute_output: per request (every request of a batch counts once, with its
  batch's duration, as Triton's backends report them): joining the inputs and handing them to ONNX Runtime's
  thread; ONNX Runtime's run; handing the outputs back and splitting them per request;
- batch_stats: the same three durations per batch size, one count per batch executed.

Every update runs on the event loop (the batcher delivers a batch there, where its result is awaited), so the
counters need no lock; they are plain ints on a slotted object: a few additions per batch and per request.
"""

from __future__ import annotations

import time

from edgeinfer.functions.batching import BatchStats
from edgeinfer.protocol import open_inference_pb2 as pb


class VersionStatistics:
    """The counters of one model version."""

    __slots__ = (
        "batches",
        "execution_count",
        "fail_count",
        "fail_ns",
        "infer_count",
        "infer_ns",
        "inference_count",
        "input_count",
        "input_ns",
        "last_inference_ms",
        "name",
        "output_count",
        "output_ns",
        "queue_count",
        "queue_ns",
        "success_count",
        "success_ns",
        "version",
    )

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self.last_inference_ms = 0
        self.inference_count = 0
        self.execution_count = 0
        self.success_count = 0
        self.success_ns = 0
        self.fail_count = 0
        self.fail_ns = 0
        self.queue_count = 0
        self.queue_ns = 0
        self.input_count = 0
        self.input_ns = 0
        self.infer_count = 0
        self.infer_ns = 0
        self.output_count = 0
        self.output_ns = 0
        # Batch size -> [executions, compute_input ns, compute_infer ns, compute_output ns]. The sizes are
        # 1..max_batch_size, so this stays small.
        self.batches: dict[int, list[int]] = {}

    def succeeded(self, rows: int, seconds: float) -> None:
        self.inference_count += rows
        self.success_count += 1
        self.success_ns += int(seconds * 1e9)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def failed(self, seconds: float) -> None:
        self.fail_count += 1
        self.fail_ns += int(seconds * 1e9)
        self.last_inference_ms = time.time_ns() // 1_000_000

    def batch(self, stats: BatchStats) -> None:
        requests = len(stats.queue_seconds)
        self.execution_count += 1
        self.queue_count += requests
        self.queue_ns += int(sum(stats.queue_seconds) * 1e9)
        self.input_count += requests
        self.input_ns += stats.input_ns * requests
        self.infer_count += requests
        self.infer_ns += stats.infer_ns * requests
        self.output_count += requests
        self.output_ns += stats.output_ns * requests
        cell = self.batches.get(stats.size)
        if cell is None:
            self.batches[stats.size] = [1, stats.input_ns, stats.infer_ns, stats.output_ns]
        else:
            cell[0] += 1
            cell[1] += stats.input_ns
            cell[2] += stats.infer_ns
            cell[3] += stats.output_ns

    def to_proto(self) -> pb.ModelStatistics:
        reply = pb.ModelStatistics(
            name=self.name,
            version=self.version,
            last_inference=self.last_inference_ms,
            inference_count=self.inference_count,
            execution_count=self.execution_count,
        )
        infer = reply.inference_stats
        _duration(infer.success, self.success_count, self.success_ns)
        _duration(infer.fail, self.fail_count, self.fail_ns)
        _duration(infer.queue, self.queue_count, self.queue_ns)
        _duration(infer.compute_input, self.input_count, self.input_ns)
        _duration(infer.compute_infer, self.infer_count, self.infer_ns)
        _duration(infer.compute_output, self.output_count, self.output_ns)
        # The function has no response cache (the gateway does): cache_hit and cache_miss stay 0.
        for size in sorted(self.batches):
            count, input_ns, infer_ns, output_ns = self.batches[size]
            entry = reply.batch_stats.add(batch_size=size)
            _duration(entry.compute_input, count, input_ns)
            _duration(entry.compute_infer, count, infer_ns)
            _duration(entry.compute_output, count, output_ns)
        return reply


def _duration(target: pb.StatisticDuration, count: int, ns: int) -> None:
    target.count = count
    target.ns = ns
