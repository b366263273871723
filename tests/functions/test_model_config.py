"""Triton's ModelConfig of a function's models, read with tritonclient.grpc and tritonclient.grpc.aio and checked
field by field against the ONNX file as ONNX Runtime reads it, and the config.yaml it was built from."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as aioclient
import yaml
from google.protobuf import json_format
from tritonclient.utils import InferenceServerException

from edgeinfer.functions import repository
from edgeinfer.functions.config import ModelConfig
from edgeinfer.functions.model_config import model_config_from_files, parse_override
from edgeinfer.protocol.errors import InvalidArgument

# ONNX Runtime's type names -> Triton's model-config types.
ORT_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64", "tensor(string)": "TYPE_STRING"}
TIMEOUT = 30.0


def expected_tensors(nodes: list[Any], batching: bool) -> list[dict[str, Any]]:
    tensors = []
    for node in nodes:
        shape = [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape]
        tensors.append(
            {"name": node.name, "data_type": ORT_TYPES[node.type], "dims": [str(d) for d in shape[1:] if batching]}
        )
    return tensors


def check_config(config: dict[str, Any], model_repo: Path, model: str) -> None:
    settings = yaml.safe_load((model_repo / model / "config.yaml").read_text())
    session = ort.InferenceSession(str(model_repo / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    batching = settings["max_batch_size"] > 0
    assert config["name"] == model
    assert config["platform"] == "onnxruntime_onnx"
    assert config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == settings["max_batch_size"]
    assert config["default_model_filename"] == "model.onnx"
    assert config["version_policy"] == {"all": {}}
    got_inputs = [{k: t[k] for k in ("name", "data_type", "dims")} for t in config["input"]]
    got_outputs = [{k: t[k] for k in ("name", "data_type", "dims")} for t in config["output"]]
    assert got_inputs == expected_tensors(session.get_inputs(), batching)
    assert got_outputs == expected_tensors(session.get_outputs(), batching)
    batcher = settings["dynamic_batching"]
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": str(batcher["max_queue_delay_microseconds"]),
        "default_queue_policy": {"max_queue_size": batcher["max_queue_size"]},
    }
    # The examples configure TensorRT -> CUDA -> CPU: the first this ONNX Runtime build has runs them.
    available = ort.get_available_providers()
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in available]
    if not gpu:
        assert config["instance_group"] == [{"name": model, "kind": "KIND_CPU", "count": 1}]
        assert "optimization" not in config
    else:  # a GPU build: the kind follows the provider that initialised
        assert config["instance_group"][0]["kind"] in ("KIND_GPU", "KIND_CPU")
    assert config["response_cache"] == {"enable": settings["cache"]["enabled"]}


@pytest.mark.parametrize("model", ["fraud", "ranker"])
def test_grpc_model_config_matches_the_onnx_file(function_address: str, model_repo: Path, model: str) -> None:
    client = triton.InferenceServerClient(function_address)
    reply = client.get_model_config(model, as_json=True, client_timeout=TIMEOUT)
    check_config(reply["config"], model_repo, model)
    # The version-qualified request answers the same.
    assert client.get_model_config(model, "1", as_json=True, client_timeout=TIMEOUT) == reply


def test_aio_model_config_matches_the_onnx_file(function_address: str, model_repo: Path) -> None:
    async def scenario() -> None:
        client = aioclient.InferenceServerClient(function_address)
        try:
            for model in ("fraud", "ranker"):
                reply = await client.get_model_config(model, as_json=True, client_timeout=TIMEOUT)
                check_config(reply["config"], model_repo, model)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_unknown_model_or_version_is_not_found(function_address: str) -> None:
    client = triton.InferenceServerClient(function_address)
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_config("nope", client_timeout=TIMEOUT)
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert "nope" in unknown.value.message()
    with pytest.raises(InferenceServerException) as version:
        client.get_model_config("fraud", "9", client_timeout=TIMEOUT)
    assert version.value.status() == "StatusCode.NOT_FOUND"
    assert "'9'" in version.value.message()


def test_config_from_files_agrees_with_the_served_one(function_address: str, model_repo: Path) -> None:
    """The gateway's answer for a model scaled to zero (files only, no ONNX Runtime) has the same tensors,
    batching, instance count and cache as the function's; only the instance kind is left to the host."""
    client = triton.InferenceServerClient(function_address)
    for entry in repository.scan(model_repo):
        served = client.get_model_config(entry.name, as_json=True, client_timeout=TIMEOUT)["config"]
        files = json_format.MessageToDict(model_config_from_files(entry), preserving_proto_field_name=True)
        for field in ("name", "platform", "backend", "max_batch_size", "input", "output", "dynamic_batching"):
            assert files[field] == served[field], field
        assert files["response_cache"] == served["response_cache"]
        assert files["instance_group"][0]["count"] == served["instance_group"][0]["count"]
        assert files["instance_group"][0]["name"] == served["instance_group"][0]["name"]


def test_override_maps_triton_names_onto_config_yaml() -> None:
    base = ModelConfig(max_batch_size=64)
    override = parse_override(
        '{"name": "m", "max_batch_size": 4, "dynamic_batching": {"max_queue_delay_microseconds": "500",'
        ' "default_queue_policy": {"max_queue_size": 7}}, "instance_group": [{"count": 2, "kind": "KIND_CPU"}],'
        ' "response_cache": {"enable": false}, "version_policy": {"latest": {"num_versions": 1}},'
        ' "parameters": {"intra_op_thread_count": {"string_value": "1"}}}',
        "m",
        base,
    )
    config = override.config
    assert config.max_batch_size == 4
    assert config.dynamic_batching.enabled and config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.dynamic_batching.max_queue_size == 7
    assert config.instance_count == 2 and config.execution_providers == ("cpu",)
    assert not config.cache.enabled
    assert config.intra_op_threads == 1
    assert override.policy.select(["1", "2", "3"]) == ["3"]
    trt = parse_override(
        '{"optimization": {"execution_accelerators": {"gpu_execution_accelerator": [{"name": "tensorrt",'
        ' "parameters": {"precision_mode": "FP16"}}]}}}',
        "m",
        base,
    ).config
    assert trt.tensorrt.fp16 and trt.execution_providers == ("tensorrt", "cuda", "cpu")
    # Fields it leaves out keep config.yaml's values.
    assert parse_override("{}", "m", base).config == base


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ('{"sequence_batching": {}}', "sequence_batching"),
        ('{"dynamic_batching": {"preferred_batch_size": [4]}}', "dynamic_batching.preferred_batch_size"),
        ('{"instance_group": [{"count": 1}, {"count": 1}]}', "instance_group"),
        ('{"instance_group": [{"gpus": [0]}]}', "instance_group[0].gpus"),
        ('{"name": "other"}', "name"),
        ('{"platform": "tensorrt_plan"}', "platform"),
        ('{"max_batch_size": "x"}', "max_batch_size"),
        ('{"parameters": {"execution_mode": {"string_value": "1"}}}', "parameters.execution_mode"),
        (
            '{"optimization": {"execution_accelerators": {"cpu_execution_accelerator": [{"name": "openvino"}]}}}',
            "optimization.execution_accelerators.cpu_execution_accelerator",
        ),
    ],
)
def test_override_rejects_what_it_cannot_honour_naming_the_field(text: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        parse_override(text, "m", ModelConfig(max_batch_size=8))
    assert f"'{field}'" in error.value.message


def test_override_that_is_not_json_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_override("{max_batch_size: 4", "m", ModelConfig())
