"""The KServe SDK (kserve 0.21) against a real gateway: InferenceRESTClient with JSON and with binary tensors on the
REST port, InferenceGRPCClient on the gRPC port; results compared with ONNX Runtime called directly.

kserve and tritonclient both register `inference.*` protos in protobuf's default pool, so the KServe clients run in
a subprocess of their own (this file imports neither): a small script that prints its results as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from testkit import hostile
from testkit.procs import start_function, start_gateway

CLIENT = r"""
import asyncio, json, sys

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

args = json.loads(sys.stdin.read())


def request(model, name, datatype, array, binary, outputs=None, parameters=None):
    tensor = InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return InferRequest(
        model_name=model, infer_inputs=[tensor], request_outputs=outputs, parameters=parameters
    )


def parameters(value):
    if value is None or isinstance(value, dict):
        return value
    return {k: str(v).strip() for k, v in value.items()}  # gRPC's InferParameter map


def listed(response, headers=None):
    header = (headers or {}).get("inference-header-content-length")
    return {"header_length": header} | {
        o.name: {"datatype": o.datatype, "shape": list(o.shape), "parameters": parameters(o.parameters),
                 "data": [v.decode() if isinstance(v, bytes) else v for v in o.as_numpy().reshape(-1).tolist()]}
        for o in response.outputs
    }


async def main():
    x = np.array(args["features"], dtype=np.float32)
    texts = np.array(args["texts"], dtype=np.object_)
    results = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30, retries=1))
    try:
        binary_out = [RequestedOutput("probabilities", parameters={"binary_data": True})]
        binary_output = {"binary_data_output": True}
        calls = {
            "rest_json": ("fraud", request("fraud", "features", "FP32", x, False)),
            "rest_binary": ("fraud", request("fraud", "features", "FP32", x, True, outputs=binary_out)),
            "rest_binary_output": ("fraud", request("fraud", "features", "FP32", x, True, parameters=binary_output)),
            "rest_bytes": ("echo_text", request("echo_text", "text", "BYTES", texts, True, parameters=binary_output)),
        }
        for key, (model, infer_request) in calls.items():
            headers: dict[str, str] = {}
            response = await rest.infer(args["rest"], infer_request, model_name=model, response_headers=headers)
            results[key] = listed(response, headers)
    finally:
        await rest.close()
    grpc_client = InferenceGRPCClient(args["grpc"], timeout=30)
    try:
        response = await grpc_client.infer(request("fraud", "features", "FP32", x, True))
        results["grpc_raw"] = listed(response)
        response = await grpc_client.infer(request("fraud", "features", "FP32", x, False))
        results["grpc_typed"] = listed(response)
    finally:
        await grpc_client.close()
    print(json.dumps(results))


asyncio.run(main())
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return hostile.write_fuzz_repo(tmp_path_factory.mktemp("kserve-models"))


@pytest.fixture(scope="module")
def gateway(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    logs = tmp_path_factory.mktemp("kserve-logs")
    function, address = start_function(repo, logs)
    try:
        proc, addresses = start_gateway(logs, {m: [address] for m in ("fraud", "echo_text")}, rest=True)
    except BaseException:
        function.stop()
        raise
    yield addresses
    proc.stop()
    function.stop()


def run_client(args: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CLIENT], input=json.dumps(args), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def test_kserve_rest_json_and_binary_and_grpc(repo: Path, gateway: dict[str, str]) -> None:
    x = np.random.default_rng().standard_normal((3, hostile.FEATURES)).astype(np.float32)
    texts = [["héllo", "wörld"], ["", "x" * 70]]
    results = run_client({"rest": gateway["rest"], "grpc": gateway["grpc"], "features": x.tolist(), "texts": texts})

    session = ort.InferenceSession(str(repo / "fraud" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    [want] = session.run(["probabilities"], {"features": x})
    for flavour in ("rest_json", "rest_binary", "rest_binary_output", "grpc_raw", "grpc_typed"):
        output = results[flavour]["probabilities"]
        assert (output["datatype"], output["shape"]) == ("FP32", [3, 2]), flavour
        got = np.array(output["data"], dtype=np.float32).reshape(3, 2)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=flavour)
    # Binary outputs came as binary data after a JSON header of the length the header gives; JSON ones in JSON.
    for flavour in ("rest_binary", "rest_binary_output", "rest_bytes"):
        assert int(results[flavour]["header_length"]) > 0, flavour
    assert results["rest_json"]["header_length"] is None

    echo = ort.InferenceSession(str(repo / "echo_text" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    [same] = echo.run(["same"], {"text": np.array(texts, dtype=np.str_)})
    assert results["rest_bytes"]["same"]["data"] == same.reshape(-1).tolist()
