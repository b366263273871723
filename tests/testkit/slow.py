"""A function whose model is slow on purpose, so deadline tests do not depend on how fast the machine is.

`slow` is the fraud model with a dynamic-batching queue delay of QUEUE_DELAY_S: a lone request waits that
long for company before its batch runs. After one such request (`prime`) the batcher has measured a batch at
≥ QUEUE_DELAY_S (it counts from the first request's arrival), so admission control refuses, at once and
deterministically, any request whose deadline leaves less than that: RESOURCE_EXHAUSTED with
"... N ms left", N being the deadline the function was given. Only a request that carries a deadline is
ever refused this way, so the refusal proves the deadline reached the function.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

MODEL = "slow"
QUEUE_DELAY_S = 2.0
TIMEOUT_MS = 1_000  # the model's default deadline: under the queue delay, so a call without one is refused too
_LEFT = re.compile(r"cannot finish within the deadline \((\d+) ms of work queued ahead, (\d+) ms left\)")


@dataclass(frozen=True)
class SlowFunction:
    address: str
    metrics_url: str


def write_slow_model(repo: Path, examples: Path) -> None:
    """Add `slow` to `repo`, from the example repository's fraud model."""
    (repo / MODEL / "1").mkdir(parents=True)
    shutil.copy(examples / "fraud" / "1" / "model.onnx", repo / MODEL / "1" / "model.onnx")
    (repo / MODEL / "config.yaml").write_text(
        "max_batch_size: 64\n"
        "dynamic_batching:\n"
        "  enabled: true\n"
        f"  max_queue_delay_microseconds: {int(QUEUE_DELAY_S * 1e6)}\n"
        "inline_compute_max_microseconds: 0\n"  # a batch on a thread, never inline (inline ignores deadlines)
        f"timeout_ms: {TIMEOUT_MS}\n"
        "cache:\n"
        "  enabled: false\n"
    )


def slow_request() -> pb.ModelInferRequest:
    return build_request(MODEL, {"features": np.ones((1, 30), np.float32)})


def prime(address: str) -> None:
    """One request with a long deadline: admitted, served after the queue delay; the batcher learns its cost."""
    with grpc.insecure_channel(address) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(slow_request(), timeout=30 + QUEUE_DELAY_S)
    assert reply.model_name == MODEL


def refusal(details: str) -> tuple[int, int] | None:
    """(ms of work queued ahead, ms left of the deadline) from an admission-control refusal, or None."""
    match = _LEFT.search(details)
    return (int(match.group(1)), int(match.group(2))) if match else None
