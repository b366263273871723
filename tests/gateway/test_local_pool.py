"""The local scale-to-zero pool: real gateway, real function processes, Knative's knobs."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from testkit.procs import scrape_metrics, start_gateway

from edgeinfer.gateway.metrics import GATEWAY_COLD_START_SECONDS, GATEWAY_COLD_START_WAITS, GATEWAY_INSTANCE_CRASHES
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request


def repo_with(model_repo: Path, root: Path, model: str, autoscaling: dict[str, Any]) -> Path:
    shutil.copytree(model_repo / model, root / model)
    config = yaml.safe_load((root / model / "config.yaml").read_text())
    config["autoscaling"] = autoscaling
    (root / model / "config.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture
def pool_gateway(request: pytest.FixtureRequest, model_repo: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    model, knobs, *extra = request.param
    repo = repo_with(model_repo, tmp_path / "repo", model, knobs)
    proc, addresses = start_gateway(
        tmp_path,
        {},
        "--backend",
        "local",
        "--model-repo",
        str(repo),
        "--state-dir",
        str(tmp_path / "state"),
        "--autoscale-tick",
        "0.5",
        "--l1-max-bytes",
        "0",
        *extra,
    )
    yield addresses
    proc.stop()
    assert not function_pids(tmp_path / "state"), "function processes outlived the gateway"


def function_pids(state_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "function" in cmdline and str(state_dir) in cmdline:
                pids.append(int(entry.name))
    return pids


def pools(addresses: dict[str, str]) -> dict[str, Any]:
    body = urllib.request.urlopen(addresses["admin"] + "/v1/pools", timeout=5).read()
    result: dict[str, Any] = json.loads(body)["pools"]
    return result


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def fraud_request(value: float = 1.0) -> Any:
    return build_request("fraud", {"features": np.full((1, 30), value, np.float32)})


AT_ZERO = {"initial-scale": 0, "window": "6s", "scale-to-zero-pod-retention-period": "1s"}


@pytest.mark.parametrize("pool_gateway", [("fraud", AT_ZERO)], indirect=True)
def test_request_at_zero_succeeds_reports_a_cold_start_then_scales_back_to_zero(pool_gateway: dict[str, str]) -> None:
    assert pools(pool_gateway)["fraud"]["ready"] == 0
    with grpc.insecure_channel(pool_gateway["grpc"]) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(fraud_request(), timeout=60)
    last_request = time.monotonic()
    assert reply.outputs[0].name == "probabilities"
    metrics = scrape_metrics(pool_gateway["admin"] + "/metrics")
    assert metrics[GATEWAY_COLD_START_WAITS + '{model="fraud",region="test"}'] == 1
    assert metrics[GATEWAY_COLD_START_SECONDS + '_count{model="fraud",region="test"}'] == 1
    assert pools(pool_gateway)["fraud"]["ready"] == 1
    wait_for(lambda: pools(pool_gateway)["fraud"]["ready"] == 0, 30, "scale to zero")
    idle = time.monotonic() - last_request
    assert idle >= 6 + 1 - 0.5, f"scaled to zero after {idle:.1f}s, before window + retention"
    # Admission: a deadline shorter than the measured cold start is refused at once (the start goes on).
    # Half the measured start (the same machine, under the same load): time to reach the gateway, far too
    # short for a start. A refusal after waiting is impossible here: the caller would get DEADLINE_EXCEEDED.
    cold_s = metrics[GATEWAY_COLD_START_SECONDS + '_sum{model="fraud",region="test"}']
    deadline_s = cold_s / 2
    with grpc.insecure_channel(pool_gateway["grpc"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(fraud_request(2.0), timeout=deadline_s)
        details = refused.value.details() or ""
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        found = re.search(
            r"scaled to zero and starting \(about ([\d.]+) s to go\), longer than the ([\d.]+) s left", details
        )
        assert found is not None, details
        to_go, left = float(found.group(1)), float(found.group(2))
        assert left <= deadline_s + 0.01 and to_go > left  # judged by this caller's deadline against the start
        assert stub.ModelInfer(fraud_request(3.0), timeout=60).outputs[0].name == "probabilities"


KPA_KNOBS = {"initial-scale": 1, "target": 1, "target-utilization-percentage": 100, "window": "6s", "max-scale": 3}


@pytest.mark.parametrize("pool_gateway", [("ranker", KPA_KNOBS)], indirect=True)
def test_rising_concurrency_adds_instances_by_the_kpa_rule(pool_gateway: dict[str, str]) -> None:
    x = np.ones((64, 512), np.float32)
    stop = time.monotonic() + 20

    async def stream(stub: Any) -> None:
        while time.monotonic() < stop and pools_ready(pool_gateway) < 3:
            await stub.ModelInfer(build_request("ranker", {"embedding": x}), timeout=30)

    async def load() -> None:
        async with grpc.aio.insecure_channel(pool_gateway["grpc"]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            await asyncio.gather(*(stream(stub) for _ in range(3)))  # ~3 concurrent: ceil(3 / (1 × 100%)) = 3

    asyncio.run(load())
    status = pools(pool_gateway)["ranker"]
    assert status["ready"] + status["starting"] == 3, status
    assert status["desired"] == 3


def pools_ready(addresses: dict[str, str]) -> int:
    status = pools(addresses)["ranker"]
    return int(status["ready"])


@pytest.mark.parametrize(
    "pool_gateway", [("fraud", {"min-scale": 2, "initial-scale": 2, "window": "6s"})], indirect=True
)
def test_killing_an_instance_under_load_loses_nothing(pool_gateway: dict[str, str]) -> None:
    wait_for(lambda: pools(pool_gateway)["fraud"]["ready"] == 2, 30, "two ready instances")
    victim = pools(pool_gateway)["fraud"]["instances"][0]["pid"]

    async def load() -> tuple[int, list[BaseException]]:
        errors: list[BaseException] = []
        done = 0
        async with grpc.aio.insecure_channel(pool_gateway["grpc"]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            async def one(i: int) -> None:
                nonlocal done
                try:
                    await stub.ModelInfer(fraud_request(float(i)), timeout=30)
                    done += 1
                except grpc.aio.AioRpcError as exc:
                    errors.append(exc)

            tasks = []
            start = time.monotonic()
            for i in range(300):  # 100 requests/s for 3 s, distinct inputs
                await asyncio.sleep(max(0.0, start + i / 100 - time.monotonic()))
                if i == 100:
                    os.kill(victim, signal.SIGKILL)
                tasks.append(asyncio.ensure_future(one(i)))
            await asyncio.gather(*tasks)
        return done, errors

    done, errors = asyncio.run(load())
    assert errors == [] and done == 300
    wait_for(lambda: pools(pool_gateway)["fraud"]["ready"] == 2, 30, "the killed instance to be replaced")
    assert victim not in [i["pid"] for i in pools(pool_gateway)["fraud"]["instances"]]
    metrics = scrape_metrics(pool_gateway["admin"] + "/metrics")
    assert metrics[GATEWAY_INSTANCE_CRASHES + '{model="fraud",region="test"}'] == 1


def patch(addresses: dict[str, str], model: str, body: bytes) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{addresses['admin']}/v1/pools/{model}", data=body, method="PATCH")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("pool_gateway", [("fraud", AT_ZERO)], indirect=True)
def test_knobs_change_at_run_time(pool_gateway: dict[str, str]) -> None:
    status, body = patch(pool_gateway, "fraud", json.dumps({"min-scale": 2}).encode())
    assert status == 200 and body["knobs"]["min-scale"] == 2
    assert body["versions"]["1"]["min-scale"] == 2  # every version's knobs (this model has one)
    wait_for(lambda: pools(pool_gateway)["fraud"]["ready"] == 2, 30, "min-scale 2 to take effect")
    assert pools(pool_gateway)["fraud"]["versions"]["1"]["ready"] == 2
    status, body = patch(pool_gateway, "fraud", json.dumps({"min-scale": 5, "max-scale": 3}).encode())
    assert status == 400 and "min-scale (5) is above max-scale (3)" in body["error"]
    status, body = patch(pool_gateway, "fraud", json.dumps({"panic-threshold-percentage": 50}).encode())
    assert status == 400 and "panic-threshold-percentage" in body["error"]
    status, body = patch(pool_gateway, "nope", b"{}")
    assert status == 404
    assert patch(pool_gateway, "fraud", json.dumps({"min-scale": 0}).encode())[0] == 200


@pytest.mark.parametrize(
    "pool_gateway", [("ranker", {"initial-scale": 0, "window": "6s"}, "--pool-max-queue", "2")], indirect=True
)
def test_a_full_activator_queue_answers_resource_exhausted_at_once(pool_gateway: dict[str, str]) -> None:
    x = np.ones((1, 512), np.float32)

    async def burst() -> list[Any]:
        async with grpc.aio.insecure_channel(pool_gateway["grpc"]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)

            async def timed(i: int) -> tuple[float, Any]:
                started = time.monotonic()
                try:
                    await stub.ModelInfer(build_request("ranker", {"embedding": x * i}), timeout=60)
                    return time.monotonic() - started, None
                except grpc.aio.AioRpcError as exc:
                    return time.monotonic() - started, exc

            return await asyncio.gather(*(timed(i) for i in range(6)))

    results = asyncio.run(burst())
    rejected = [(t, e) for t, e in results if e is not None]
    served = [t for t, e in results if e is None]
    assert len(rejected) == 4 and len(served) == 2
    for _, error in rejected:
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "wait for an instance" in error.details()
    # At once, not after the cold start: every refusal came back before either admitted request, which waited
    # for the start (an ordering, which load does not change, instead of a wall-clock bound).
    assert max(t for t, _ in rejected) < min(served)
