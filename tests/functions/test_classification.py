"""Triton's classification extension on a real function, with tritonclient's `class_count` (grpc and grpc.aio):
the top-k "score:index[:label]" strings equal numpy's top-k of ONNX Runtime's outputs, labels from labels.txt."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as aioclient
from onnx import TensorProto, helper
from testkit.hostile import write_echo_text
from testkit.procs import start_function

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request

TIMEOUT = 30.0
FRAUD_LABELS = ["benign", "malignant"]
# Fewer labels than classes, one empty: those classes come back without a label, as in Triton.
COUNTS_LABELS = ["zero", "", "two"]
SCORE = re.compile(r"^-?\d+(\.\d{6})?:\d+(:.+)?$")


def write_counts(root: Path) -> None:
    """counts: an INT32 identity over 5 values that does not batch (max_batch_size 0)."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["values"], ["same"])],
        "counts",
        [helper.make_tensor_value_info("values", TensorProto.INT32, [5])],
        [helper.make_tensor_value_info("same", TensorProto.INT32, [5])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    (root / "counts" / "1").mkdir(parents=True)
    (root / "counts" / "1" / "model.onnx").write_bytes(model.SerializeToString())
    (root / "counts" / "config.yaml").write_text("max_batch_size: 0\n")
    (root / "counts" / "labels.txt").write_text("\n".join(COUNTS_LABELS) + "\n")


@pytest.fixture(scope="module")
def served(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    repo = tmp_path_factory.mktemp("classification-models")
    shutil.copytree(model_repo / "fraud", repo / "fraud")
    (repo / "fraud" / "labels.txt").write_text("\n".join(FRAUD_LABELS) + "\n")
    shutil.copytree(model_repo / "ranker", repo / "ranker")
    write_counts(repo)
    write_echo_text(repo)
    proc, address = start_function(repo, tmp_path_factory.mktemp("classification-logs"))
    yield address, repo
    proc.stop()


def top_k(scores: np.ndarray, k: int, labels: Sequence[str]) -> list[str]:
    """Triton's strings for one row: highest first, score as C++'s std::to_string, label when there is one."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")[: min(k, scores.size)]
    out = []
    for index in order:
        value = scores[index]
        text = f"{float(value):f}" if np.issubdtype(scores.dtype, np.floating) else str(int(value))
        text += f":{index}"
        if index < len(labels) and labels[index]:
            text += f":{labels[index]}"
        out.append(text)
    return out


def reference(repo: Path, model: str, inputs: dict[str, np.ndarray]) -> np.ndarray:
    session = ort.InferenceSession(str(repo / model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(None, inputs)[0]
    return result


def classify(
    client: triton.InferenceServerClient, model: str, name: str, x: np.ndarray, output: str, k: int
) -> np.ndarray:
    tensor = triton.InferInput(name, list(x.shape), "FP32" if x.dtype == np.float32 else "INT32")
    tensor.set_data_from_numpy(x)
    wanted = [triton.InferRequestedOutput(output, class_count=k)]
    result = client.infer(model, [tensor], outputs=wanted, client_timeout=TIMEOUT)
    assert result.get_output(output).datatype == "BYTES"
    got: np.ndarray = result.as_numpy(output)
    return got


def fraud_features(batch: int) -> np.ndarray:
    rng = np.random.default_rng(batch)
    return (rng.random((batch, 30)) * rng.choice([1, 10, 100, 1000], 30)).astype(np.float32)


def test_top_k_with_labels_per_batch_element(served: tuple[str, Path]) -> None:
    address, repo = served
    client = triton.InferenceServerClient(address)
    x = fraud_features(4)
    got = classify(client, "fraud", "features", x, "probabilities", 2)
    expected = reference(repo, "fraud", {"features": x})
    assert got.shape == (4, 2)
    for row, scores in zip(got, expected, strict=True):
        assert [s.decode() for s in row] == top_k(scores, 2, FRAUD_LABELS)
        assert all(SCORE.match(s.decode()) for s in row)
        assert row[0].decode().endswith((":benign", ":malignant"))
    # k above the class count is capped at it, as Triton does.
    assert classify(client, "fraud", "features", x, "probabilities", 10).shape == (4, 2)


def test_top_k_without_labels(served: tuple[str, Path]) -> None:
    address, repo = served
    client = triton.InferenceServerClient(address)
    x = np.random.default_rng(3).standard_normal((3, 512)).astype(np.float32)
    got = classify(client, "ranker", "embedding", x, "scores", 5)
    expected = reference(repo, "ranker", {"embedding": x})
    assert got.shape == (3, 5)
    for row, scores in zip(got, expected, strict=True):
        assert [s.decode() for s in row] == top_k(scores, 5, ())
        # Without labels.txt: "score:index" only; the scores agree with ONNX Runtime's within rtol 1e-6.
        for text, index in zip(row, np.argsort(-scores, kind="stable")[:5], strict=True):
            score, position = text.decode().split(":")
            assert int(position) == index
            np.testing.assert_allclose(float(score), scores[index], rtol=1e-6, atol=1e-6)


def test_unbatched_integer_output_has_shape_k(served: tuple[str, Path]) -> None:
    address, repo = served
    client = triton.InferenceServerClient(address)
    x = np.array([7, 30, -2, 11, 4], dtype=np.int32)
    got = classify(client, "counts", "values", x, "same", 3)
    assert got.shape == (3,)
    assert [s.decode() for s in got] == ["30:1", "11:3", "7:0:zero"]
    assert [s.decode() for s in got] == top_k(reference(repo, "counts", {"values": x}), 3, COUNTS_LABELS)


def test_aio_client_classification(served: tuple[str, Path]) -> None:
    address, repo = served
    x = fraud_features(2)

    async def scenario() -> np.ndarray:
        client = aioclient.InferenceServerClient(address)
        try:
            tensor = aioclient.InferInput("features", [2, 30], "FP32")
            tensor.set_data_from_numpy(x)
            wanted = [aioclient.InferRequestedOutput("probabilities", class_count=1)]
            result = await client.infer("fraud", [tensor], outputs=wanted, client_timeout=TIMEOUT)
            got: np.ndarray = result.as_numpy("probabilities")
            return got
        finally:
            await client.close()

    got = asyncio.run(scenario())
    expected = reference(repo, "fraud", {"features": x})
    assert got.shape == (2, 1)
    assert [row[0].decode() for row in got] == [top_k(s, 1, FRAUD_LABELS)[0] for s in expected]


def raw_classify(address: str, request: pb.ModelInferRequest) -> grpc.RpcError:
    with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as error:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=TIMEOUT)
    return error.value


@pytest.mark.parametrize("count", [0, -3])
def test_a_count_below_one_is_invalid(served: tuple[str, Path], count: int) -> None:
    address, _ = served
    request = build_request("fraud", {"features": fraud_features(1)}, outputs=["probabilities"])
    request.outputs[0].parameters["classification"].int64_param = count
    error = raw_classify(address, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "classification" in (error.details() or "") and "probabilities" in (error.details() or "")


def test_a_count_that_is_not_an_integer_is_invalid(served: tuple[str, Path]) -> None:
    address, _ = served
    request = build_request("fraud", {"features": fraud_features(1)}, outputs=["probabilities"])
    request.outputs[0].parameters["classification"].string_param = "2"
    error = raw_classify(address, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "int64" in (error.details() or "")


def test_a_non_numeric_output_cannot_be_classified(served: tuple[str, Path]) -> None:
    address, _ = served
    text = np.array([[b"a", b"b"]], dtype=np.object_)
    request = build_request("echo_text", {"text": text}, outputs=["same"])
    request.outputs[0].parameters["classification"].int64_param = 1
    error = raw_classify(address, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "BYTES" in (error.details() or "") and "same" in (error.details() or "")
