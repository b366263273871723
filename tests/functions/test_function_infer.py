"""tritonclient and the project's own client against a real `edgeinfer function` process."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

MODELS = {"fraud": ("features", 30, "probabilities"), "ranker": ("embedding", 512, "scores")}
BATCHES = [1, 2, 7, 16, 33, 64]


def reference(model_repo: Path, model: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model_repo / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    name, _, output = MODELS[model]
    result: np.ndarray = session.run([output], {name: x})[0]
    return result


def features(model: str, batch: int, seed: int) -> np.ndarray:
    width = MODELS[model][1]
    rng = np.random.default_rng(seed)
    if model == "fraud":  # the breast-cancer features' scale: 0..~2500
        return (rng.random((batch, width)) * rng.choice([1, 10, 100, 1000], width)).astype(np.float32)
    return rng.standard_normal((batch, width)).astype(np.float32)


@pytest.mark.parametrize("model", list(MODELS))
def test_tritonclient_raw_matches_onnxruntime(function_address: str, model_repo: Path, model: str) -> None:
    name, width, output = MODELS[model]
    client = triton.InferenceServerClient(function_address)
    for batch in BATCHES:
        x = features(model, batch, seed=batch)
        tensor = triton.InferInput(name, [batch, width], "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor], outputs=[triton.InferRequestedOutput(output)])
        got = result.as_numpy(output)
        assert got.shape == (batch, reference(model_repo, model, x).shape[1])
        np.testing.assert_allclose(got, reference(model_repo, model, x), rtol=1e-6, atol=0)


@pytest.mark.parametrize("model", list(MODELS))
def test_tritonclient_typed_contents_match_onnxruntime(function_address: str, model_repo: Path, model: str) -> None:
    name, width, output = MODELS[model]
    client = triton.InferenceServerClient(function_address)
    for batch in BATCHES:
        x = features(model, batch, seed=100 + batch)
        tensor = triton.InferInput(name, [batch, width], "FP32")
        # tritonclient always sends raw; fill its protobuf's typed contents instead.
        tensor._get_tensor().contents.fp32_contents.extend(x.reshape(-1).tolist())
        result = client.infer(model, [tensor])
        reply = result.get_output(output)
        assert len(result.get_response().raw_output_contents) == 0, "typed request must get a typed reply"
        got = np.array(reply.contents.fp32_contents, dtype=np.float32).reshape(list(reply.shape))
        np.testing.assert_allclose(got, reference(model_repo, model, x), rtol=1e-6, atol=0)


def test_own_client_concurrent_mixed_batches_are_split_correctly(function_address: str, model_repo: Path) -> None:
    """Concurrent requests of different batch sizes get joined by the batcher; each gets its own rows back."""
    import asyncio

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(function_address) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            inputs = [features("fraud", 1 + i % 5, seed=1000 + i) for i in range(40)]
            requests = [build_request("fraud", {"features": x}, raw=i % 2 == 0) for i, x in enumerate(inputs)]
            replies = await asyncio.gather(*(stub.ModelInfer(r) for r in requests))
            for x, reply in zip(inputs, replies, strict=True):
                got = output_arrays(reply)["probabilities"]
                np.testing.assert_allclose(got, reference(model_repo, "fraud", x), rtol=1e-6, atol=0)

    asyncio.run(scenario())


def test_metadata_readiness_and_provider(function_address: str) -> None:
    client = triton.InferenceServerClient(function_address)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("fraud") and client.is_model_ready("ranker", "1")
    assert not client.is_model_ready("absent")
    metadata = client.get_model_metadata("ranker")
    assert metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("embedding", "FP32", [-1, 512])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("scores", "FP32", [-1, 1000])]
    server = client.get_server_metadata()
    assert server.name == "edgeinfer"
    with grpc.insecure_channel(function_address) as channel:
        ours = pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name="fraud"))
    assert ours.properties["execution_provider"].string_param == "CPUExecutionProvider"
    assert ours.properties["max_batch_size"].string_param == "64"


def test_health_service_reports_serving(function_address: str) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(function_address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService"):
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_stream_infer_answers_in_band(function_address: str, model_repo: Path) -> None:
    x = features("fraud", 3, seed=5)
    requests = [
        build_request("fraud", {"features": x}, request_id="a"),
        build_request("nope", {"features": x}, request_id="b"),
        build_request("fraud", {"features": x}, request_id="c"),
    ]
    with grpc.insecure_channel(function_address) as channel:
        replies = list(pb_grpc.GRPCInferenceServiceStub(channel).ModelStreamInfer(iter(requests), timeout=10))
    assert [r.infer_response.id for r in replies] == ["a", "b", "c"]
    assert "unknown model 'nope'" in replies[1].error_message
    np.testing.assert_allclose(
        output_arrays(replies[2].infer_response)["probabilities"], reference(model_repo, "fraud", x), rtol=1e-6
    )
