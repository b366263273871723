"""Triton's model control on a real function: repository index, load (with a `config` override, or `file:`
contents) and unload in explicit mode, the refusal in none mode, and poll mode following the repository; with
tritonclient.grpc and tritonclient.grpc.aio, unchanged. Each test works on models of its own (copies of the
examples under other names), so the order they run in does not matter."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as aioclient
from testkit import slow
from testkit.procs import Proc, start_function
from tritonclient.utils import InferenceServerException

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc

TIMEOUT = 30.0
DEADLINE_S = 60.0
# Copies of the examples the explicit-mode function's repository holds; each test uses its own.
COPIES = {
    "fraud_start": "fraud",
    "fraud_override": "fraud",
    "fraud_unload": "fraud",
    "fraud_aio": "fraud",
    "fraud_bad": "fraud",
    "ranker_late": "ranker",
}


def copy_model(examples: Path, source: str, target: Path) -> None:
    shutil.copytree(examples / source, target)


@pytest.fixture(scope="module")
def explicit(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    repo = tmp_path_factory.mktemp("explicit-models")
    for name, source in COPIES.items():
        copy_model(model_repo, source, repo / name)
    slow.write_slow_model(repo, model_repo)
    proc, address = start_function(
        repo, tmp_path_factory.mktemp("explicit-logs"), "--model-control-mode", "explicit", "--load-model",
        "fraud_start", "--load-model", "fraud_unload",
    )  # fmt: skip
    yield address, repo
    proc.stop()


def index_of(client: triton.InferenceServerClient) -> dict[str, tuple[str, str]]:
    """name -> (state, reason) of version 1, from the repository index."""
    reply = client.get_model_repository_index(as_json=True, client_timeout=TIMEOUT)
    return {
        m["name"]: (m.get("state", ""), m.get("reason", "")) for m in reply.get("models", []) if m["version"] == "1"
    }


def fraud_infer(client: triton.InferenceServerClient, model: str, model_repo: Path, batch: int = 3) -> None:
    x = (np.random.default_rng(batch).random((batch, 30)) * 100).astype(np.float32)
    tensor = triton.InferInput("features", [batch, 30], "FP32")
    tensor.set_data_from_numpy(x)
    got = client.infer(model, [tensor], client_timeout=TIMEOUT).as_numpy("probabilities")
    session = ort.InferenceSession(str(model_repo / "fraud" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(["probabilities"], {"features": x})[0], rtol=1e-6)


def status_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as error:
        call()
    return str(error.value.status()), str(error.value.message())


def wait_for(check: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {deadline_s}s")


def test_explicit_mode_loads_only_the_named_models_at_start(explicit: tuple[str, Path], model_repo: Path) -> None:
    address, _ = explicit
    client = triton.InferenceServerClient(address)
    index = index_of(client)
    # Every model of the repository is listed; test_load_from_file_parameters (any order) adds its own.
    assert set(index) - {"from_files"} == {*COPIES, slow.MODEL}
    assert index["fraud_start"] == ("READY", "")
    # "not loaded"; "unloaded" if the aio test (any order) loaded and unloaded it first.
    assert index["ranker_late"] in (("UNAVAILABLE", "not loaded"), ("UNAVAILABLE", "unloaded"))
    assert client.is_model_ready("fraud_start") and not client.is_model_ready("ranker_late")
    fraud_infer(client, "fraud_start", model_repo)
    code, message = status_of(lambda: client.get_model_metadata("ranker_late", client_timeout=TIMEOUT))
    assert code == "StatusCode.NOT_FOUND" and "load_model" in message
    # Only READY ones, through the RPC's `ready` flag (tritonclient does not set it).
    with grpc.insecure_channel(address) as channel:
        ready = pb_grpc.GRPCInferenceServiceStub(channel).RepositoryIndex(
            pb.RepositoryIndexRequest(ready=True), timeout=TIMEOUT
        )
    assert {m.name for m in ready.models} >= {"fraud_start", "fraud_unload"}
    assert all(m.state == "READY" for m in ready.models)


def test_load_with_a_config_override_is_what_get_model_config_shows(
    explicit: tuple[str, Path], model_repo: Path
) -> None:
    address, _ = explicit
    client = triton.InferenceServerClient(address)
    override = {
        "max_batch_size": 4,
        "dynamic_batching": {"max_queue_delay_microseconds": 300, "default_queue_policy": {"max_queue_size": 9}},
        "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
        "response_cache": {"enable": False},
    }
    client.load_model("fraud_override", config=json.dumps(override), client_timeout=TIMEOUT)
    assert index_of(client)["fraud_override"] == ("READY", "")
    config = client.get_model_config("fraud_override", as_json=True, client_timeout=TIMEOUT)["config"]
    assert config["max_batch_size"] == 4
    assert config["dynamic_batching"] == {
        "max_queue_delay_microseconds": "300",
        "default_queue_policy": {"max_queue_size": 9},
    }
    assert config["instance_group"] == [{"name": "fraud_override", "kind": "KIND_CPU", "count": 2}]
    assert not config["response_cache"].get("enable", False)  # protobuf's JSON leaves out a false
    fraud_infer(client, "fraud_override", model_repo, batch=4)
    code, message = status_of(lambda: fraud_infer(client, "fraud_override", model_repo, batch=5))
    assert code == "StatusCode.INVALID_ARGUMENT" and "1..4" in message
    # A reload without the override goes back to config.yaml.
    client.load_model("fraud_override", client_timeout=TIMEOUT)
    config = client.get_model_config("fraud_override", as_json=True, client_timeout=TIMEOUT)["config"]
    assert config["max_batch_size"] == 64 and config["instance_group"][0]["count"] == 1


def test_a_config_field_it_cannot_honour_is_invalid_argument_naming_it(explicit: tuple[str, Path]) -> None:
    address, _ = explicit
    client = triton.InferenceServerClient(address)
    bad = json.dumps({"max_batch_size": 4, "sequence_batching": {}})
    code, message = status_of(lambda: client.load_model("fraud_bad", config=bad, client_timeout=TIMEOUT))
    assert code == "StatusCode.INVALID_ARGUMENT" and "'sequence_batching'" in message
    code, message = status_of(lambda: client.load_model("fraud_bad", config="{nope", client_timeout=TIMEOUT))
    assert code == "StatusCode.INVALID_ARGUMENT" and "JSON" in message
    declared = json.dumps({"input": [{"name": "features", "data_type": "TYPE_FP32", "dims": [31]}]})
    code, message = status_of(lambda: client.load_model("fraud_bad", config=declared, client_timeout=TIMEOUT))
    assert code == "StatusCode.INVALID_ARGUMENT" and "'input[0].dims'" in message
    assert index_of(client)["fraud_bad"][0] == "UNAVAILABLE"
    code, message = status_of(lambda: client.load_model("no_such_model", client_timeout=TIMEOUT))
    assert code == "StatusCode.NOT_FOUND" and "no_such_model" in message
    code, _ = status_of(lambda: client.load_model("../etc", client_timeout=TIMEOUT))
    assert code == "StatusCode.INVALID_ARGUMENT"
    code, message = status_of(
        lambda: client.load_model("fraud_bad", files={"file:1/model.onnx": b"x"}, client_timeout=TIMEOUT)
    )
    assert code == "StatusCode.INVALID_ARGUMENT" and "'config'" in message


def test_load_from_file_parameters(explicit: tuple[str, Path], model_repo: Path) -> None:
    address, _ = explicit
    client = triton.InferenceServerClient(address)
    content = (model_repo / "fraud" / "1" / "model.onnx").read_bytes()
    config = json.dumps({"max_batch_size": 8, "dynamic_batching": {}})
    client.load_model("from_files", config=config, files={"file:1/model.onnx": content}, client_timeout=TIMEOUT)
    assert index_of(client)["from_files"] == ("READY", "")
    assert client.get_model_config("from_files", as_json=True, client_timeout=TIMEOUT)["config"]["max_batch_size"] == 8
    fraud_infer(client, "from_files", model_repo, batch=8)
    client.unload_model("from_files", client_timeout=TIMEOUT)
    assert index_of(client)["from_files"] == ("UNAVAILABLE", "unloaded")
    code, _ = status_of(
        lambda: client.load_model(
            "from_files", config=config, files={"file:../../x/model.onnx": content}, client_timeout=TIMEOUT
        )
    )
    assert code == "StatusCode.INVALID_ARGUMENT"


def test_unload_refuses_new_requests_and_others_keep_serving(explicit: tuple[str, Path], model_repo: Path) -> None:
    address, _ = explicit
    client = triton.InferenceServerClient(address)
    fraud_infer(client, "fraud_unload", model_repo)
    client.unload_model("fraud_unload", client_timeout=TIMEOUT)
    assert index_of(client)["fraud_unload"] == ("UNAVAILABLE", "unloaded")
    code, message = status_of(lambda: fraud_infer(client, "fraud_unload", model_repo))
    assert code == "StatusCode.NOT_FOUND" and "fraud_unload" in message and "not loaded" in message
    assert client.is_server_ready()
    fraud_infer(client, "fraud_start", model_repo)
    # Unloading it again is no error (Triton's answer too); loading it again serves it again.
    client.unload_model("fraud_unload", client_timeout=TIMEOUT)
    client.load_model("fraud_unload", client_timeout=TIMEOUT)
    fraud_infer(client, "fraud_unload", model_repo)


def queued_ahead_ms(address: str) -> int:
    """The work the slow model has queued, as its admission control states it when refusing a full batch
    (64 rows) with a short deadline: one batch's worth while its queue is empty, two once a request waits there.
    The probe itself is refused at once and never queued."""
    probe = slow.slow_request()
    probe.ClearField("inputs")
    probe.ClearField("raw_input_contents")
    tensor = probe.inputs.add(name="features", datatype="FP32", shape=[64, 30])
    tensor.contents.fp32_contents.extend([1.0] * 64 * 30)
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as error:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(probe, timeout=1.0)
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.value.details()
    found = slow.refusal(error.value.details() or "")
    assert found is not None, error.value.details()
    return found[0]


def test_unload_finishes_the_request_in_flight(explicit: tuple[str, Path]) -> None:
    address, _ = explicit
    client = triton.InferenceServerClient(address)
    client.load_model(slow.MODEL, client_timeout=TIMEOUT)
    slow.prime(address)  # the batcher has measured a batch (the 2 s queue delay)
    empty = queued_ahead_ms(address)
    outcome: dict[str, Any] = {}

    def in_flight() -> None:
        with grpc.insecure_channel(address) as channel:
            try:
                reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(slow.slow_request(), timeout=TIMEOUT)
                outcome["reply"] = reply
            except grpc.RpcError as exc:
                outcome["error"] = exc

    thread = threading.Thread(target=in_flight)
    thread.start()
    try:
        # The request is queued (waiting out the queue delay for company) once the queue states more work.
        wait_for(lambda: queued_ahead_ms(address) >= 1.5 * empty, "the slow request queued")
        started = time.monotonic()
        client.unload_model(slow.MODEL, client_timeout=TIMEOUT)
        unloaded_after = time.monotonic() - started
    finally:
        thread.join(TIMEOUT)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["reply"].model_name == slow.MODEL and len(outcome["reply"].outputs) == 1
    assert unloaded_after < TIMEOUT
    assert index_of(client)[slow.MODEL] == ("UNAVAILABLE", "unloaded")
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as error:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(slow.slow_request(), timeout=TIMEOUT)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_aio_client_index_load_unload(explicit: tuple[str, Path], model_repo: Path) -> None:
    address, _ = explicit

    async def scenario() -> None:
        client = aioclient.InferenceServerClient(address)
        try:
            await client.load_model("fraud_aio", client_timeout=TIMEOUT)
            index = await client.get_model_repository_index(as_json=True, client_timeout=TIMEOUT)
            assert {"name": "fraud_aio", "version": "1", "state": "READY"} in index["models"]
            assert await client.is_model_ready("fraud_aio")
            await client.unload_model("fraud_aio", client_timeout=TIMEOUT)
            assert not await client.is_model_ready("fraud_aio")
        finally:
            await client.close()

    asyncio.run(scenario())
    client = triton.InferenceServerClient(address)
    # The late ranker loads on request too, and answers as ONNX Runtime does.
    client.load_model("ranker_late", client_timeout=TIMEOUT)
    x = np.random.default_rng(5).standard_normal((2, 512)).astype(np.float32)
    tensor = triton.InferInput("embedding", [2, 512], "FP32")
    tensor.set_data_from_numpy(x)
    try:
        got = client.infer("ranker_late", [tensor], client_timeout=TIMEOUT).as_numpy("scores")
    finally:  # the module's function is shared: the start-up test expects it unloaded, in any order
        client.unload_model("ranker_late", client_timeout=TIMEOUT)
    session = ort.InferenceSession(str(model_repo / "ranker" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(["scores"], {"embedding": x})[0], rtol=1e-6, atol=1e-6)


def test_none_mode_refuses_load_and_unload(function_address: str) -> None:
    client = triton.InferenceServerClient(function_address)
    for call in (
        lambda: client.load_model("fraud", client_timeout=TIMEOUT),
        lambda: client.unload_model("fraud", client_timeout=TIMEOUT),
    ):
        code, message = status_of(call)
        assert code == "StatusCode.FAILED_PRECONDITION"
        assert "--model-control-mode explicit" in message
    index = index_of(client)
    assert index["fraud"] == ("READY", "") and index["ranker"] == ("READY", "")


def test_poll_mode_follows_the_repository(model_repo: Path, tmp_path: Path) -> None:
    repo = tmp_path / "models"
    repo.mkdir()
    copy_model(model_repo, "fraud", repo / "fraud")
    proc: Proc
    proc, address = start_function(repo, tmp_path, "--model-control-mode", "poll", "--repository-poll-secs", "0.2")
    try:
        client = triton.InferenceServerClient(address)
        assert index_of(client) == {"fraud": ("READY", "")}
        code, _ = status_of(lambda: client.load_model("fraud", client_timeout=TIMEOUT))
        assert code == "StatusCode.FAILED_PRECONDITION"
        # A model appears whole (copied aside, then renamed in: a poll never sees half a model).
        copy_model(model_repo, "ranker", repo / ".ranker")
        (repo / ".ranker").rename(repo / "ranker")
        wait_for(lambda: index_of(client).get("ranker") == ("READY", ""), "ranker loaded by the poll")
        x = np.random.default_rng(1).standard_normal((1, 512)).astype(np.float32)
        tensor = triton.InferInput("embedding", [1, 512], "FP32")
        tensor.set_data_from_numpy(x)
        got = client.infer("ranker", [tensor], client_timeout=TIMEOUT).as_numpy("scores")
        session = ort.InferenceSession(str(repo / "ranker" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(got, session.run(["scores"], {"embedding": x})[0], rtol=1e-6, atol=1e-6)
        # A changed config.yaml reloads the model with it.
        config = repo / "fraud" / "config.yaml"
        config.write_text(re.sub(r"max_batch_size: \d+", "max_batch_size: 5", config.read_text()))

        def reloaded() -> bool:
            reply = client.get_model_config("fraud", as_json=True, client_timeout=TIMEOUT)
            return bool(reply["config"]["max_batch_size"] == 5)

        wait_for(reloaded, "fraud reloaded with its new config.yaml")
        # A model that leaves the repository is unloaded.
        (repo / "fraud").rename(repo / ".gone")
        wait_for(lambda: index_of(client).get("fraud") == ("UNAVAILABLE", "unloaded"), "fraud unloaded")
        code, _ = status_of(lambda: client.get_model_metadata("fraud", client_timeout=TIMEOUT))
        assert code == "StatusCode.NOT_FOUND"
        assert client.is_server_ready()
    finally:
        proc.stop()
