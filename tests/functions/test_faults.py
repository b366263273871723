"""A drill's faults.yaml (functions/config.py's Faults) on a real function and on the data plane in-process with a
real ONNX Runtime session: the delay (a lower bound only), the exact share of INTERNAL failures, nothing of it in
the metadata, and a bad file refused with a message naming it."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
from testkit.procs import Proc, free_port, start_function

from edgeinfer.functions.config import ConfigError, Faults, load_faults
from edgeinfer.functions.dataplane import DataPlane
from edgeinfer.functions.examples import write_canary
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.errors import DeadlineExceeded, Internal
from edgeinfer.protocol.tensors import build_request, output_arrays

SLOW, ERRORS = "2", "3"  # fraud's versions in the function's repository: canaries `slow` and `errors`
DELAY_S = 0.2
REQUESTS = 400
MESSAGE = f"model 'fraud' version {ERRORS}: injected fault (faults.yaml error_rate 0.2)"


def fraud_repo(model_repo: Path, root: Path) -> Path:
    """A repository with fraud version 1 copied from the examples (no retraining)."""
    (root / "fraud").mkdir(parents=True)
    shutil.copytree(model_repo / "fraud" / "1", root / "fraud" / "1")
    shutil.copy(model_repo / "fraud" / "config.yaml", root / "fraud" / "config.yaml")
    return root


def rows(batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((batch, 30)) * rng.choice([1, 10, 100, 1000], 30)).astype(np.float32)


def reference(model_repo: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_repo / "fraud" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, {"features": x})[0]
    return result


def request(version: str, x: np.ndarray) -> pb.ModelInferRequest:
    req = build_request("fraud", {"features": x})
    req.model_version = version
    return req


@pytest.fixture(scope="module")
def faulty(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    """A real function serving fraud 1 (healthy), 2 (slow canary) and 3 (errors canary)."""
    repo = fraud_repo(model_repo, tmp_path_factory.mktemp("faulty-models"))
    write_canary(repo, "slow", SLOW)
    write_canary(repo, "errors", ERRORS)
    proc, address = start_function(repo, tmp_path_factory.mktemp("faulty-logs"))
    yield proc, address
    proc.stop()


def test_the_load_warns_loudly_about_each_faulty_version(faulty: tuple[Proc, str]) -> None:
    output = faulty[0].output()
    assert f"version {SLOW} of fraud has injected faults: delay_ms 200" in output
    assert f"version {ERRORS} of fraud has injected faults: error_rate 0.2" in output
    assert "version 1 of fraud has injected faults" not in output


def test_a_slow_version_takes_at_least_its_delay(faulty: tuple[Proc, str], model_repo: Path) -> None:
    with grpc.insecure_channel(faulty[1]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for i in range(5):
            x = rows(1 + i, seed=i)
            started = time.monotonic()
            reply = stub.ModelInfer(request(SLOW, x), timeout=30)
            # A lower bound only: a busy machine may add any amount on top.
            assert time.monotonic() - started >= DELAY_S
            assert reply.model_version == SLOW
            np.testing.assert_allclose(output_arrays(reply)["probabilities"], reference(model_repo, x), rtol=1e-6)


def test_an_errors_version_fails_its_share_with_internal(faulty: tuple[Proc, str], model_repo: Path) -> None:
    async def scenario() -> tuple[list[grpc.aio.AioRpcError], int]:
        failures: list[grpc.aio.AioRpcError] = []
        served = 0
        async with grpc.aio.insecure_channel(faulty[1]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            x = rows(2, seed=7)
            expected = reference(model_repo, x)
            for _ in range(REQUESTS // 50):
                calls = [stub.ModelInfer(request(ERRORS, x), timeout=30) for _ in range(50)]
                for outcome in await asyncio.gather(*calls, return_exceptions=True):
                    if isinstance(outcome, grpc.aio.AioRpcError):
                        failures.append(outcome)
                    else:
                        assert isinstance(outcome, pb.ModelInferResponse), outcome
                        np.testing.assert_allclose(output_arrays(outcome)["probabilities"], expected, rtol=1e-6)
                        served += 1
            # The healthy version beside it never fails.
            healthy = await asyncio.gather(*(stub.ModelInfer(request("1", x), timeout=30) for _ in range(50)))
            assert all(r.model_version == "1" for r in healthy)
        return failures, served

    failures, served = asyncio.run(scenario())
    assert len(failures) + served == REQUESTS
    assert {f.code() for f in failures} == {grpc.StatusCode.INTERNAL}
    assert {f.details() for f in failures} == {MESSAGE}
    # Counted, not drawn: any 400 requests in a row fail exactly 400 x 0.2 of them.
    assert len(failures) == round(REQUESTS * 0.2)


def test_faults_show_nowhere_in_metadata_or_config(faulty: tuple[Proc, str]) -> None:
    with grpc.insecure_channel(faulty[1]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        answers = {}
        for version in ("1", SLOW, ERRORS):
            metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="fraud", version=version), timeout=10)
            config = stub.ModelConfig(pb.ModelConfigRequest(name="fraud", version=version), timeout=10).config
            del metadata.versions[:]
            del config.version_policy.specific.versions[:]
            answers[version] = (metadata.SerializeToString(deterministic=True), str(config))
            for word in ("faults", "injected", "delay_ms", "error_rate"):
                assert word not in str(metadata) and word not in str(config)
        assert answers["1"] == answers[SLOW] == answers[ERRORS]


# -- in-process: the data plane with a real ONNX Runtime session ---------------------------------------------


def test_the_delay_holds_neither_the_loop_nor_the_batcher(model_repo: Path, tmp_path: Path) -> None:
    """While requests of a version that sleeps (long) wait, the healthy version beside it answers, nothing is
    queued in the sleeper's batcher, and a deadline shorter than the delay ends in DEADLINE_EXCEEDED."""
    repo = fraud_repo(model_repo, tmp_path)
    write_canary(repo, "good", "2")
    (repo / "fraud" / "2" / "faults.yaml").write_text("delay_ms: 60000\n")

    async def scenario() -> None:
        dp = DataPlane(repo)
        await dp.load()
        try:
            x = rows(1, seed=3)
            sleepers = [asyncio.create_task(dp.infer(request("2", x))) for _ in range(8)]
            await asyncio.sleep(0)  # let them start sleeping
            reply = await dp.infer(request("1", x))
            assert reply.model_version == "1"
            assert not any(task.done() for task in sleepers)
            assert dp.resolve("fraud", "2").batcher.queued == 0
            assert dp.resolve("fraud", "2").inflight == len(sleepers)
            with pytest.raises(DeadlineExceeded, match=r"faults\.yaml delay_ms 60000"):
                await dp.infer(request("2", x), timeout=0.05)
            for task in sleepers:
                task.cancel()
            await asyncio.gather(*sleepers, return_exceptions=True)
        finally:
            await dp.close()

    asyncio.run(scenario())


def test_a_seed_fails_the_same_requests_every_run(model_repo: Path, tmp_path: Path) -> None:
    repo = fraud_repo(model_repo, tmp_path)
    write_canary(repo, "errors", "2")

    async def pattern() -> list[bool]:
        dp = DataPlane(repo)
        await dp.load()
        failed = []
        try:
            x = rows(1, seed=5)
            for _ in range(100):
                try:
                    await dp.infer(request("2", x))
                    failed.append(False)
                except Internal as exc:
                    assert exc.message == "model 'fraud' version 2: injected fault (faults.yaml error_rate 0.2)"
                    failed.append(True)
        finally:
            await dp.close()
        return failed

    first, second = asyncio.run(pattern()), asyncio.run(pattern())
    assert first == second and 0 < sum(first) < 100


def test_poll_mode_follows_a_faults_file(model_repo: Path, tmp_path: Path) -> None:
    repo = fraud_repo(model_repo, tmp_path)
    faults = repo / "fraud" / "1" / "faults.yaml"

    async def scenario() -> None:
        dp = DataPlane(repo, control_mode="poll", poll_seconds=3600)
        await dp.load()
        try:
            x = rows(1, seed=9)
            await dp.infer(request("1", x))
            faults.write_text("error_rate: 1.0\n")
            await dp.poll_once()
            with pytest.raises(Internal, match="injected fault"):
                await dp.infer(request("1", x))
            faults.unlink()
            await dp.poll_once()
            assert (await dp.infer(request("1", x))).model_version == "1"
        finally:
            await dp.close()

    asyncio.run(scenario())


# -- a bad faults.yaml ---------------------------------------------------------------------------------------

BAD = {
    "delay: 200\n": "delay: Extra inputs are not permitted",
    "delay_ms: -5\n": "delay_ms: Input should be greater than or equal to 0",
    "error_rate: 1.5\n": "error_rate: Input should be less than or equal to 1",
    "error_rate: yes\n": "error_rate: Input should be a valid number",
    "delay_ms: '200'\n": "delay_ms: Input should be a valid number",
    "seed: 1.5\n": "seed: Input should be a valid integer",
    "- delay_ms: 200\n": "expected a mapping at the top level",
    "delay_ms: [\n": "not valid YAML",
}


@pytest.mark.parametrize("text", list(BAD))
def test_a_bad_faults_file_is_refused_naming_the_file_and_field(tmp_path: Path, text: str) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_faults(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert BAD[text] in str(caught.value)


def test_faults_file_values(tmp_path: Path) -> None:
    assert load_faults(tmp_path / "faults.yaml") is None
    path = tmp_path / "faults.yaml"
    path.write_text("delay_ms: 200\nerror_rate: 0.2\nseed: 1\n")
    assert load_faults(path) == Faults(delay_ms=200.0, error_rate=0.2, seed=1)
    path.write_text("")
    assert load_faults(path) == Faults()


def test_a_function_with_a_bad_faults_file_exits_with_one_clear_line(model_repo: Path, tmp_path: Path) -> None:
    repo = fraud_repo(model_repo, tmp_path / "models")
    write_canary(repo, "good", "2")
    bad = repo / "fraud" / "2" / "faults.yaml"
    bad.write_text("error_rate: 20\n")
    done = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "function", "--model-repo", str(repo), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edgeinfer function: {bad}: error_rate: Input should be less than or equal to 1"), last
    assert "Traceback" not in done.stderr
