"""Process-level behaviour of `edgeinfer function`: port, metrics, tracing, batching, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from testkit.procs import free_port, grpc_ready, start_function

from edgeinfer.functions.metrics import (
    FUNCTION_BATCH_SIZE,
    FUNCTION_COLD_START_SECONDS,
    FUNCTION_COMPUTE_SECONDS,
    FUNCTION_QUEUE_SECONDS,
    FUNCTION_READY,
    FUNCTION_REQUEST_FAILURES,
    FUNCTION_REQUEST_SECONDS,
    FUNCTION_REQUESTS,
)
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


async def burst(address: str, model: str, x: np.ndarray, n: int, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = build_request(model, {"features" if model == "fraud" else "embedding": x})
        await asyncio.gather(*(stub.ModelInfer(request, metadata=metadata, timeout=30) for _ in range(n)))


def test_port_from_env_metrics_and_batching(model_repo: Path, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    import subprocess
    import sys

    from testkit.procs import Proc

    proc = Proc(
        [
            sys.executable,
            "-m",
            "edgeinfer.cli",
            "function",
            "--model-repo",
            str(model_repo),
            "--metrics-port",
            str(metrics_port),
        ],
        tmp_path / "fn.log",
        env={"PORT": str(port)},
    )
    try:
        proc.wait_until(lambda: grpc_ready(f"127.0.0.1:{port}"), 60, "function on $PORT")
        metrics = scrape(metrics_port)
        assert metrics[FUNCTION_READY] == 1
        assert metrics[FUNCTION_COLD_START_SECONDS + "_count"] == 1
        assert 0 < metrics[FUNCTION_COLD_START_SECONDS + "_sum"] < 60
        asyncio.run(burst(f"127.0.0.1:{port}", "ranker", np.ones((1, 512), np.float32), 48))
        metrics = scrape(metrics_port)
        assert metrics[FUNCTION_REQUESTS + '{code="OK",model="ranker"}'] == 48
        batches = metrics[FUNCTION_BATCH_SIZE + '_count{model="ranker"}']
        rows = metrics[FUNCTION_BATCH_SIZE + '_sum{model="ranker"}']
        assert rows == 48 and batches < 48, "concurrent requests should have been batched"
        assert metrics[FUNCTION_COMPUTE_SECONDS + '_count{model="ranker"}'] == batches
        assert metrics[FUNCTION_QUEUE_SECONDS + '_count{model="ranker"}'] == 48
        assert metrics[FUNCTION_REQUEST_SECONDS + '_count{code="OK",model="ranker"}'] == 48
        assert metrics[FUNCTION_REQUEST_SECONDS + '_sum{code="OK",model="ranker"}'] > 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError):
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
                build_request("ranker", {"embedding": np.ones((1, 3), np.float32)})
            )
        metrics = scrape(metrics_port)
        assert metrics[FUNCTION_REQUEST_FAILURES + '{code="INVALID_ARGUMENT",model="ranker"}'] == 1
        assert metrics[FUNCTION_REQUEST_SECONDS + '_count{code="INVALID_ARGUMENT",model="ranker"}'] == 1
        # A rejection is decided before any compute: it lands in the lowest buckets, not near the deadline.
        fast = FUNCTION_REQUEST_SECONDS + '_bucket{code="INVALID_ARGUMENT",le="0.01",model="ranker"}'
        assert metrics[fast] == 1
        assert "cold start" in proc.output()
    finally:
        assert proc.stop() == 0
    del subprocess


def test_span_continues_the_callers_traceparent(model_repo: Path, tmp_path: Path) -> None:
    spans = tmp_path / "spans.jsonl"
    proc, address = start_function(model_repo, tmp_path, "--trace", "console", "--trace-file", str(spans))
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    try:
        asyncio.run(
            burst(address, "fraud", np.ones((1, 30), np.float32), 1, (("traceparent", f"00-{trace_id}-{parent}-01"),))
        )
    finally:
        proc.stop()  # flushes the span processor
    records = [json.loads(line) for line in spans.read_text().splitlines() if line.strip()]
    infer = [r for r in records if r["name"] == "ModelInfer"]
    assert len(infer) == 1
    assert infer[0]["context"]["trace_id"] == f"0x{trace_id}"
    assert infer[0]["parent_id"] == f"0x{parent}"
    assert infer[0]["attributes"]["model"] == "fraud"


def test_sigterm_drains_in_flight_requests(model_repo: Path, tmp_path: Path) -> None:
    """A stream that is open when SIGTERM arrives keeps being served until it ends; then the process exits 0."""
    proc, address = start_function(model_repo, tmp_path)

    async def scenario() -> list[str]:
        async with grpc.aio.insecure_channel(address) as channel:
            stream = pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(timeout=30)
            x = np.ones((64, 512), np.float32)
            await stream.write(build_request("ranker", {"embedding": x}, request_id="before"))
            ids = [(await stream.read()).infer_response.id]  # the call is now in flight on the server
            proc.popen.send_signal(signal.SIGTERM)
            for name in ("after-1", "after-2"):
                await stream.write(build_request("ranker", {"embedding": x}, request_id=name))
            await stream.done_writing()
            while (reply := await stream.read()) is not grpc.aio.EOF:
                assert not reply.error_message, reply.error_message
                ids.append(reply.infer_response.id)
            return ids

    assert asyncio.run(scenario()) == ["before", "after-1", "after-2"]
    assert proc.popen.wait(30) == 0
    proc.stop()
