"""The gateway without a cache: fronts, validation, routing, deadlines, region in every response."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from testkit.procs import Proc, free_port, scrape_metrics, start_function, start_gateway
from testkit.slow import MODEL as SLOW
from testkit.slow import QUEUE_DELAY_S, SlowFunction, refusal, slow_request
from testkit.slow import TIMEOUT_MS as SLOW_TIMEOUT_MS

from edgeinfer.functions.metrics import FUNCTION_REQUEST_FAILURES, FUNCTION_REQUESTS
from edgeinfer.gateway.metrics import GATEWAY_FUNCTION_CALLS, GATEWAY_REQUESTS
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

REGION = "eu-west"


@pytest.fixture(scope="module")
def plain_gateway(function_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    routes = {"fraud": [function_address], "ranker": [function_address]}
    proc, addresses = start_gateway(
        tmp_path_factory.mktemp("gw"), routes, "--l1-max-bytes", "0", region=REGION, rest=True
    )
    yield addresses
    proc.stop()


def infer_both(address: str, model: str, name: str, x: np.ndarray) -> triton.InferResult:
    tensor = triton.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return triton.InferenceServerClient(address).infer(model, [tensor])


def test_tritonclient_through_gateway_equals_direct(plain_gateway: dict[str, str], function_address: str) -> None:
    rng = np.random.default_rng(3)
    for model, name, width, output in (
        ("fraud", "features", 30, "probabilities"),
        ("ranker", "embedding", 512, "scores"),
    ):
        for batch in (1, 5, 64):
            x = (rng.random((batch, width)) * 50).astype(np.float32)
            via = infer_both(plain_gateway["grpc"], model, name, x).as_numpy(output)
            direct = infer_both(function_address, model, name, x).as_numpy(output)
            assert via.tobytes() == direct.tobytes()


def call(
    address: str, request: pb.ModelInferRequest, timeout: float = 10
) -> tuple[pb.ModelInferResponse, dict[str, str]]:
    with grpc.insecure_channel(address) as channel:
        reply, rpc = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer.with_call(request, timeout=timeout)
        return reply, dict(rpc.trailing_metadata() or ())


def test_every_response_names_the_region(plain_gateway: dict[str, str]) -> None:
    reply, trailers = call(
        plain_gateway["grpc"], build_request("fraud", {"features": np.ones((1, 30), np.float32)}, request_id="q-1")
    )
    assert trailers["x-edgeinfer-region"] == REGION
    assert trailers["x-edgeinfer-cache"] == "bypass"
    assert reply.id == "q-1" and reply.parameters["cache_status"].string_param == "bypass"
    with grpc.insecure_channel(plain_gateway["grpc"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(build_request("nope", {"features": np.ones((1, 30), np.float32)}), timeout=5)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert dict(info.value.trailing_metadata() or ())["x-edgeinfer-region"] == REGION
        _, rpc = stub.ServerLive.with_call(pb.ServerLiveRequest())
        assert dict(rpc.trailing_metadata() or ())["x-edgeinfer-region"] == REGION


@pytest.mark.parametrize(
    ("request_", "code", "phrase"),
    [
        (
            build_request("fraud", {"features": np.ones((1, 29), np.float32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "dimension 1 must be 30",
        ),
        (
            build_request("fraud", {"features": np.ones((1, 30), np.float64)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "expected datatype FP32, got FP64",
        ),
        (
            build_request("fraud", {"features": np.ones((65, 30), np.float32)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "batch size 65",
        ),
        (
            build_request("fraud", {"features": np.ones((1, 30), np.float32)}, version="7"),
            grpc.StatusCode.NOT_FOUND,
            "no version '7'",
        ),
        (
            build_request("nope", {"features": np.ones((1, 30), np.float32)}),
            grpc.StatusCode.NOT_FOUND,
            "unknown model 'nope'",
        ),
    ],
)
def test_bad_requests_stop_at_the_gateway(
    plain_gateway: dict[str, str], request_: pb.ModelInferRequest, code: grpc.StatusCode, phrase: str
) -> None:
    before = scrape_metrics(plain_gateway["admin"] + "/metrics")
    with grpc.insecure_channel(plain_gateway["grpc"]) as channel, pytest.raises(grpc.RpcError) as info:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request_, timeout=5)
    assert info.value.code() == code and phrase in (info.value.details() or "")
    after = scrape_metrics(plain_gateway["admin"] + "/metrics")
    calls = [k for k in after if k.startswith(GATEWAY_FUNCTION_CALLS)]
    assert all(after[k] == before.get(k, 0) for k in calls), "a bad request reached a function"


def test_truncated_message_is_invalid_argument(plain_gateway: dict[str, str]) -> None:
    data = build_request("fraud", {"features": np.ones((1, 30), np.float32)}).SerializeToString()
    with grpc.insecure_channel(plain_gateway["grpc"]) as channel, pytest.raises(grpc.RpcError) as info:
        channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(data[:-7], timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_caller_deadline_reaches_the_function(slow_function: SlowFunction, tmp_path: Path) -> None:
    """The function refuses by the caller's deadline: it saw it, through the gateway (testkit/slow.py).

    A gateway that dropped the deadline would send the model's timeout_ms (1 s) or its own default (10 s)
    instead: the function would say so in "N ms left", or admit the request and leave the caller to its timer.
    """
    gateway, addresses = start_gateway(tmp_path, {SLOW: [slow_function.address]}, "--l1-max-bytes", "0")
    deadline_s = 0.5
    failures = FUNCTION_REQUEST_FAILURES + f'{{code="RESOURCE_EXHAUSTED",model="{SLOW}"}}'
    try:
        before = scrape_metrics(slow_function.metrics_url).get(failures, 0)
        with grpc.insecure_channel(addresses["grpc"]) as channel, pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(slow_request(), timeout=deadline_s)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        refused = refusal(info.value.details() or "")
        assert refused is not None, info.value.details()
        queued_ms, left_ms = refused
        assert queued_ms >= QUEUE_DELAY_S * 1000  # the primed estimate: why it could not finish in time
        # What the function was told is left: the caller's second less the way there (and gRPC's rounding).
        assert 0 < left_ms <= deadline_s * 1000 + 50
        assert scrape_metrics(slow_function.metrics_url).get(failures, 0) == before + 1
        # No caller deadline: the model's timeout_ms is the budget (a gateway that sent its own 10 s default,
        # and a function that ignored timeout_ms, would both admit it and answer after the queue delay).
        with grpc.insecure_channel(addresses["grpc"]) as channel, pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(slow_request(), timeout=None)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
        refused = refusal(info.value.details() or "")
        assert refused is not None, info.value.details()
        assert SLOW_TIMEOUT_MS / 2 < refused[1] <= SLOW_TIMEOUT_MS + 50
        assert scrape_metrics(slow_function.metrics_url).get(failures, 0) == before + 2
    finally:
        gateway.stop()


def post(url: str, body: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_rest_front(plain_gateway: dict[str, str], function_address: str) -> None:
    rest = plain_gateway["rest"]
    x = np.linspace(0, 30, 60, dtype=np.float32).reshape(2, 30)
    body = {"id": "r-1", "inputs": [{"name": "features", "shape": [2, 30], "datatype": "FP32", "data": x.tolist()}]}
    status, headers, reply = post(f"{rest}/v2/models/fraud/infer", json.dumps(body).encode())
    assert status == 200 and headers["x-edgeinfer-region"] == REGION
    direct = infer_both(function_address, "fraud", "features", x).as_numpy("probabilities")
    assert reply["id"] == "r-1"
    out = reply["outputs"][0]  # type: ignore[index]
    assert out["name"] == "probabilities" and out["shape"] == [2, 2]
    np.testing.assert_array_equal(np.array(out["data"], np.float32).reshape(2, 2), direct)
    status, _, reply = post(f"{rest}/v2/models/fraud/infer", b"{not json")
    assert status == 400 and "not valid JSON" in str(reply["error"])
    bad = {"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP32", "data": [1.0] * 29}]}
    status, _, reply = post(f"{rest}/v2/models/fraud/infer", json.dumps(bad).encode())
    assert status == 400 and "29 values do not fill shape [1, 30]" in str(reply["error"])
    status, _, reply = post(f"{rest}/v2/models/nope/infer", json.dumps(body).encode())
    assert status == 404
    meta = json.loads(urllib.request.urlopen(f"{rest}/v2/models/ranker", timeout=5).read())
    assert meta["inputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 512]}]
    assert json.loads(urllib.request.urlopen(f"{rest}/v2/health/ready", timeout=5).read()) == {"ready": True}


def test_admin_port(plain_gateway: dict[str, str]) -> None:
    admin = plain_gateway["admin"]
    assert json.loads(urllib.request.urlopen(f"{admin}/healthz", timeout=5).read())["live"] is True
    assert json.loads(urllib.request.urlopen(f"{admin}/readyz", timeout=5).read())["ready"] is True
    # A request of its own first: in random order this may be the first test to use the gateway.
    infer_both(plain_gateway["grpc"], "fraud", "features", np.ones((1, 30), np.float32))
    metrics = scrape_metrics(f"{admin}/metrics")
    assert any(f'region="{REGION}"' in k for k in metrics if k.startswith(GATEWAY_REQUESTS))


def test_static_backend_spreads_load_and_retries_on_unavailable(model_repo: Path, tmp_path: Path) -> None:
    procs: list[Proc] = []
    try:
        addresses = []
        metric_ports = []
        for _ in range(2):
            port = free_port()
            proc, address = start_function(model_repo, tmp_path, "--metrics-port", str(port))
            procs.append(proc)
            addresses.append(address)
            metric_ports.append(port)
        dead = f"127.0.0.1:{free_port()}"  # nothing listens here
        gw, gw_addresses = start_gateway(tmp_path, {"fraud": [dead, *addresses]}, "--l1-max-bytes", "0")
        procs.append(gw)

        async def load() -> list[object]:
            async with grpc.aio.insecure_channel(gw_addresses["grpc"]) as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                request = build_request("fraud", {"features": np.ones((1, 30), np.float32)})
                return await asyncio.gather(
                    *(stub.ModelInfer(request, timeout=10) for _ in range(200)), return_exceptions=True
                )

        results = asyncio.run(load())
        failures = [r for r in results if isinstance(r, BaseException)]
        assert not failures, failures[:3]
        assert all(output_arrays(r)["probabilities"].shape == (1, 2) for r in results)  # type: ignore[arg-type]
        served = [
            scrape_metrics(f"http://127.0.0.1:{p}/metrics").get(FUNCTION_REQUESTS + '{code="OK",model="fraud"}', 0)
            for p in metric_ports
        ]
        assert sum(served) == 200
        assert min(served) >= 40, f"load was not spread: {served}"
    finally:
        for proc in procs:
            proc.stop()
