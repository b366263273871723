"""The Triton benchmark peer (benchmarks/common/triton_peer.py, benchmarks/peers/triton_onnx.py) is a real Triton.

tritonserver from the nvidia-pytriton wheel, in its own venv, serving the example fraud model: it answers
tritonclient.grpc's infer with the function's outputs for the same inputs, its response cache is on when asked
(Triton's own statistics count the hits) and off otherwise, it listens on loopback only, the endpoints PyTriton
restricts refuse a caller without its token while statistics (perf_analyzer's) stay open, and the libpython
gotcha is refused with an explanation rather than a stub crash.

Marked slow: the first run builds a ~450 MB venv, and each Triton takes seconds to start and to stop.
    .venv/bin/pytest tests/benchmarks_peers/test_triton_peer.py -m slow -n 0
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from testkit.procs import start_function
from tritonclient.utils import InferenceServerException

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # benchmarks/ is a directory of scripts, not an installed package

from benchmarks.common.procs import is_loopback, listening_addresses  # noqa: E402
from benchmarks.common.triton_peer import (  # noqa: E402
    SERVER_SCRIPT,
    TritonPeer,
    ensure_triton_venv,
    start_triton,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MODEL = "fraud"


@pytest.fixture(scope="module")
def triton_python() -> Path:
    return ensure_triton_venv()


@pytest.fixture(scope="module")
def triton_cached(
    model_repo: Path, triton_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonPeer]:
    logs = tmp_path_factory.mktemp("triton-cache")
    peer = start_triton(model_repo, MODEL, logs, response_cache=True, python=triton_python)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def triton_uncached(
    model_repo: Path, triton_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonPeer]:
    logs = tmp_path_factory.mktemp("triton")
    peer = start_triton(model_repo, MODEL, logs, response_cache=False, python=triton_python)
    yield peer
    peer.stop()


@pytest.fixture(scope="module")
def function(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, address = start_function(model_repo, tmp_path_factory.mktemp("function"))
    yield address
    proc.stop()


def infer(address: str, features: np.ndarray) -> np.ndarray:
    with triton_grpc.InferenceServerClient(address) as client:
        tensor = triton_grpc.InferInput("features", list(features.shape), "FP32")
        tensor.set_data_from_numpy(features)
        reply = client.infer(MODEL, [tensor], outputs=[triton_grpc.InferRequestedOutput("probabilities")])
        out: np.ndarray = reply.as_numpy("probabilities")
        return out


def cache_counts(address: str) -> dict[str, int]:
    with triton_grpc.InferenceServerClient(address) as client:
        stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    inference = stats["inference_stats"]
    return {
        "success": int(inference["success"].get("count", 0)),
        "cache_hit": int(inference["cache_hit"].get("count", 0)),
        "cache_miss": int(inference["cache_miss"].get("count", 0)),
        "executions": int(stats.get("execution_count", 0)),
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in before}


@pytest.mark.parametrize("batch", [1, 5])
def test_answers_with_the_functions_outputs(triton_uncached: TritonPeer, function: str, batch: int) -> None:
    rng = np.random.default_rng(batch)
    for _ in range(3):
        # The breast-cancer features' scale: both classes show up, so the outputs are not all 0 and 1.
        features = (rng.standard_normal((batch, 30)) * 50 + 100).astype(np.float32)
        ours, theirs = infer(function, features), infer(triton_uncached.address, features)
        assert theirs.shape == (batch, 2) and theirs.dtype == np.float32
        np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-7)


def test_response_cache_on_answers_repeats_from_the_cache(triton_cached: TritonPeer) -> None:
    features = np.random.default_rng(7).standard_normal((1, 30)).astype(np.float32)
    before = cache_counts(triton_cached.address)
    replies = [infer(triton_cached.address, features) for _ in range(4)]
    counts = delta(before, cache_counts(triton_cached.address))
    assert counts == {"success": 4, "cache_hit": 3, "cache_miss": 1, "executions": 1}, counts
    for reply in replies[1:]:
        np.testing.assert_array_equal(reply, replies[0])
    # A different request is a miss, not someone else's answer.
    other = features + 1
    before = cache_counts(triton_cached.address)
    infer(triton_cached.address, other)
    assert delta(before, cache_counts(triton_cached.address))["cache_miss"] == 1


def test_response_cache_off_executes_every_request(triton_uncached: TritonPeer) -> None:
    features = np.random.default_rng(8).standard_normal((1, 30)).astype(np.float32)
    before = cache_counts(triton_uncached.address)
    for _ in range(3):
        infer(triton_uncached.address, features)
    counts = delta(before, cache_counts(triton_uncached.address))
    assert counts["success"] == 3 and counts["cache_hit"] == 0 and counts["executions"] == 3, counts


def test_batches_as_the_function_config_says(triton_uncached: TritonPeer, model_repo: Path) -> None:
    with triton_grpc.InferenceServerClient(triton_uncached.address) as client:
        config = client.get_model_config(MODEL, as_json=True)["config"]
    assert int(config["max_batch_size"]) == 64
    assert int(config["dynamic_batching"]["max_queue_delay_microseconds"]) == 200
    assert "response_cache" not in config or not config["response_cache"].get("enable", False)


def test_listens_on_loopback_only(triton_cached: TritonPeer) -> None:
    addresses = listening_addresses(triton_cached.process.group_pids())
    assert len(addresses) >= 2, addresses  # gRPC and HTTP; no metrics port
    assert all(is_loopback(a) for a in addresses), addresses


def test_restricted_endpoints_refuse_without_the_token_and_statistics_stay_open(triton_cached: TritonPeer) -> None:
    with triton_grpc.InferenceServerClient(triton_cached.address) as client:
        with pytest.raises(InferenceServerException, match=r"(?i)restricted|permission|unavailable|token"):
            client.get_model_repository_index()
        with pytest.raises(InferenceServerException):
            client.get_system_shared_memory_status()
        assert client.get_inference_statistics(MODEL, as_json=True)["model_stats"]  # perf_analyzer reads these


def test_bad_input_gets_an_error_and_the_server_stays_up(triton_cached: TritonPeer) -> None:
    with triton_grpc.InferenceServerClient(triton_cached.address) as client:
        tensor = triton_grpc.InferInput("features", [1, 29], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 29), dtype=np.float32))
        with pytest.raises(InferenceServerException, match=r"(?i)unexpected shape"):
            client.infer(MODEL, [tensor])
    assert infer(triton_cached.address, np.zeros((1, 30), dtype=np.float32)).shape == (1, 2)


def test_refuses_to_start_without_its_libpython_first_on_the_library_path(
    triton_python: Path, model_repo: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    argv = [
        str(triton_python), str(SERVER_SCRIPT), "--model", f"{MODEL}={model_repo / MODEL / '1' / 'model.onnx'}",
        "--max-batch-size", "64", "--max-queue-delay-us", "200", "--grpc-port", "1", "--http-port", "2",
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "LD_LIBRARY_PATH must start with" in done.stderr, done.stderr
