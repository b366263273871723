"""Triton's inference statistics of a function (its own process: the counts are cumulative), read with
tritonclient.grpc and tritonclient.grpc.aio after known inferences, with Triton's meanings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as aioclient
from testkit.procs import start_function
from tritonclient.utils import InferenceServerException

TIMEOUT = 30.0


@pytest.fixture(scope="module")
def address(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, address = start_function(model_repo, tmp_path_factory.mktemp("stats-logs"))
    yield address
    proc.stop()


def fraud_input(batch: int, seed: int) -> tuple[triton.InferInput, np.ndarray]:
    x = (np.random.default_rng(seed).random((batch, 30)) * 100).astype(np.float32)
    tensor = triton.InferInput("features", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor, x


def stat(stats: dict[str, Any], key: str) -> tuple[int, int]:
    entry = stats["inference_stats"].get(key, {})
    return int(entry.get("count", 0)), int(entry.get("ns", 0))


def test_counts_after_known_inferences_have_tritons_meanings(address: str, model_repo: Path) -> None:
    client = triton.InferenceServerClient(address)
    session = ort.InferenceSession(str(model_repo / "fraud" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    before_ms = time.time_ns() // 1_000_000
    # One at a time, so none share a batch: five of batch 1, one of batch 7.
    for i, batch in enumerate([1, 1, 1, 1, 1, 7]):
        tensor, x = fraud_input(batch, i)
        got = client.infer("fraud", [tensor], client_timeout=TIMEOUT).as_numpy("probabilities")
        np.testing.assert_allclose(got, session.run(["probabilities"], {"features": x})[0], rtol=1e-6)
    wrong = triton.InferInput("features", [1, 29], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 29), np.float32))
    with pytest.raises(InferenceServerException):
        client.infer("fraud", [wrong], client_timeout=TIMEOUT)
    after_ms = time.time_ns() // 1_000_000

    reply = client.get_inference_statistics("fraud", "1", as_json=True, client_timeout=TIMEOUT)
    (stats,) = reply["model_stats"]
    assert (stats["name"], stats["version"]) == ("fraud", "1")
    assert before_ms <= int(stats["last_inference"]) <= after_ms
    assert int(stats["inference_count"]) == 12  # each batch element counts one
    assert int(stats["execution_count"]) == 6  # one batch each
    success, fail = stat(stats, "success"), stat(stats, "fail")
    assert success[0] == 6 and success[1] > 0
    assert fail[0] == 1 and fail[1] > 0
    parts = [stat(stats, key) for key in ("queue", "compute_input", "compute_infer", "compute_output")]
    for count, ns in parts:
        assert count == 6 and ns > 0
    # Each request's queue and compute happen within its time from arrival to reply (1 µs of clock rounding).
    assert sum(ns for _, ns in parts) <= success[1] + 6_000
    batches = {int(b["batch_size"]): b for b in stats["batch_stats"]}
    assert set(batches) == {1, 7}
    assert int(batches[1]["compute_infer"]["count"]) == 5
    assert int(batches[7]["compute_infer"]["count"]) == 1
    for batch in batches.values():
        for key in ("compute_input", "compute_infer", "compute_output"):
            assert int(batch[key]["ns"]) > 0
    assert not stats["inference_stats"].get("cache_hit") and not stats["inference_stats"].get("cache_miss")


def test_concurrent_requests_count_once_each_and_batches_add_up(address: str) -> None:
    requests = 8

    async def scenario() -> dict[str, Any]:
        client = aioclient.InferenceServerClient(address)
        try:
            start = await client.get_inference_statistics("ranker", as_json=True, client_timeout=TIMEOUT)
            (before,) = start["model_stats"]

            async def one(seed: int) -> None:
                x = np.random.default_rng(seed).standard_normal((1, 512)).astype(np.float32)
                tensor = aioclient.InferInput("embedding", [1, 512], "FP32")
                tensor.set_data_from_numpy(x)
                await client.infer("ranker", [tensor], client_timeout=TIMEOUT)

            await asyncio.gather(*(one(i) for i in range(requests)))
            end = await client.get_inference_statistics("ranker", as_json=True, client_timeout=TIMEOUT)
            (after,) = end["model_stats"]
            return {"before": before, "after": after}
        finally:
            await client.close()

    result = asyncio.run(scenario())
    before, after = result["before"], result["after"]
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == requests
    assert stat(after, "success")[0] - stat(before, "success")[0] == requests
    # However the batcher joined them: every execution is in batch_stats, and their rows are the requests'.
    executions = sum(int(b["compute_infer"]["count"]) for b in after["batch_stats"])
    rows = sum(int(b["batch_size"]) * int(b["compute_infer"]["count"]) for b in after["batch_stats"])
    assert executions == int(after["execution_count"])
    assert rows == int(after["inference_count"])
    assert 1 <= int(after["execution_count"]) - int(before.get("execution_count", 0)) <= requests


def test_every_model_every_version_and_unknown_ones(address: str) -> None:
    client = triton.InferenceServerClient(address)
    every = client.get_inference_statistics(as_json=True, client_timeout=TIMEOUT)
    assert sorted((s["name"], s["version"]) for s in every["model_stats"]) == [("fraud", "1"), ("ranker", "1")]
    versions = client.get_inference_statistics("fraud", as_json=True, client_timeout=TIMEOUT)
    assert [s["version"] for s in versions["model_stats"]] == ["1"]
    for name, version in (("nope", ""), ("fraud", "3")):
        with pytest.raises(InferenceServerException) as error:
            client.get_inference_statistics(name, version, client_timeout=TIMEOUT)
        assert error.value.status() == "StatusCode.NOT_FOUND"
        assert name in error.value.message()
