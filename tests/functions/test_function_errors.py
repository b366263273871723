"""Every bad input gets its status code and a message a person can act on; the server stays up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from testkit.procs import Proc, scrape_metrics, start_function
from testkit.slow import MODEL as SLOW
from testkit.slow import SlowFunction, refusal, slow_request

from edgeinfer.functions.metrics import FUNCTION_REQUEST_FAILURES
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays

GOOD = np.ones((2, 30), dtype=np.float32)


def good_request() -> pb.ModelInferRequest:
    return build_request("fraud", {"features": GOOD})


def mutate(change: Callable[[pb.ModelInferRequest], None]) -> pb.ModelInferRequest:
    request = good_request()
    change(request)
    return request


def _add_extra(r: pb.ModelInferRequest) -> None:
    r.inputs.add(name="extra", datatype="FP32", shape=[2, 1])
    r.raw_input_contents.append(b"\x00" * 8)


def _mix(r: pb.ModelInferRequest) -> None:
    r.inputs[0].contents.fp32_contents.extend([1.0] * 60)


def _dup(r: pb.ModelInferRequest) -> None:
    r.inputs.add().CopyFrom(r.inputs[0])
    r.raw_input_contents.append(r.raw_input_contents[0])


CASES: list[tuple[str, pb.ModelInferRequest, grpc.StatusCode, list[str]]] = [
    (
        "unknown model",
        build_request("nope", {"features": GOOD}),
        grpc.StatusCode.NOT_FOUND,
        ["unknown model 'nope'", "fraud, ranker"],
    ),
    (
        "unknown version",
        build_request("fraud", {"features": GOOD}, version="9"),
        grpc.StatusCode.NOT_FOUND,
        ["no version '9'", "available: 1"],
    ),
    (
        "missing input",
        mutate(lambda r: (r.ClearField("inputs"), r.ClearField("raw_input_contents"))),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["missing input", "features"],
    ),
    ("extra input", mutate(_add_extra), grpc.StatusCode.INVALID_ARGUMENT, ["unexpected input 'extra'"]),
    ("duplicate input", mutate(_dup), grpc.StatusCode.INVALID_ARGUMENT, ["'features' appears more than once"]),
    (
        "wrong datatype",
        build_request("fraud", {"features": GOOD.astype(np.float64)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'features'", "expected datatype FP32, got FP64"],
    ),
    (
        "absent datatype",
        mutate(lambda r: setattr(r.inputs[0], "datatype", "")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'features'", "expected datatype FP32, got (none)"],
    ),
    (
        "wrong rank",
        build_request("fraud", {"features": np.ones(30, np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'features'", "expected rank 2"],
    ),
    (
        "wrong dimension",
        build_request("fraud", {"features": np.ones((2, 29), np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'features'", "dimension 1 must be 30"],
    ),
    (
        "batch too large",
        build_request("fraud", {"features": np.ones((65, 30), np.float32)}),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["batch size 65", "1..64"],
    ),
    (
        "raw size mismatch",
        mutate(lambda r: r.raw_input_contents.__setitem__(0, b"\x00" * 239)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'features'", "239 bytes, expected 240"],
    ),
    ("raw and typed mixed", mutate(_mix), grpc.StatusCode.INVALID_ARGUMENT, ["'features'", "cannot be mixed"]),
    (
        "negative shape",
        mutate(lambda r: r.inputs[0].shape.__setitem__(0, -2)),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["'features'", "negative dimension"],
    ),
    (
        "unknown output",
        mutate(lambda r: r.outputs.add(name="label")),
        grpc.StatusCode.INVALID_ARGUMENT,
        ["no output(s) label", "probabilities"],
    ),
]


@pytest.mark.parametrize(("case", "request_", "code", "phrases"), CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_code_and_clear_message(
    function_address: str, case: str, request_: pb.ModelInferRequest, code: grpc.StatusCode, phrases: list[str]
) -> None:
    with grpc.insecure_channel(function_address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request_, timeout=5)
        assert info.value.code() == code, info.value.details()
        for phrase in phrases:
            assert phrase in info.value.details()
        # The server answers normally right after.
        reply = stub.ModelInfer(good_request(), timeout=5)
        assert output_arrays(reply)["probabilities"].shape == (2, 2)


def test_truncated_protobuf_is_rejected(function_address: str) -> None:
    raw = good_request().SerializeToString()
    with grpc.insecure_channel(function_address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as info:
            call(raw[: len(raw) // 2], timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid inference.ModelInferRequest" in (info.value.details() or "")
        assert pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest()).live


def test_metadata_of_unknown_model_is_not_found(function_address: str) -> None:
    with grpc.insecure_channel(function_address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelMetadata(pb.ModelMetadataRequest(name="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module")
def small_limit_server(model_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, address = start_function(model_repo, tmp_path_factory.mktemp("small"), "--max-message-bytes", "100000")
    yield address
    proc.stop()


def test_oversized_message_is_resource_exhausted(small_limit_server: str) -> None:
    big = build_request("ranker", {"embedding": np.ones((64, 512), np.float32)})  # 128 KiB > 100 kB
    with grpc.insecure_channel(small_limit_server) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(big, timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "100000" in (info.value.details() or "")
        small = build_request("ranker", {"embedding": np.ones((1, 512), np.float32)})
        assert output_arrays(stub.ModelInfer(small, timeout=5))["scores"].shape == (1, 1000)


def test_caller_deadline_is_honoured(slow_function: SlowFunction) -> None:
    """The function acts on the caller's deadline: work that cannot finish within it is refused at once.

    (A deadline that expires in the client, as a sub-millisecond one does, would prove nothing.)
    """
    failures = FUNCTION_REQUEST_FAILURES + f'{{code="RESOURCE_EXHAUSTED",model="{SLOW}"}}'
    before = scrape_metrics(slow_function.metrics_url).get(failures, 0)
    left_ms = []
    with grpc.insecure_channel(slow_function.address) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for deadline_s in (0.5, 1.5):
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(slow_request(), timeout=deadline_s)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, info.value.details()
            refused = refusal(info.value.details() or "")
            assert refused is not None, info.value.details()
            # The deadline it read is this caller's (not the model's 60 s timeout_ms), up to gRPC's rounding.
            assert 0 < refused[1] <= deadline_s * 1000 + 50
            left_ms.append(refused[1])
    assert left_ms[1] > left_ms[0]  # and it follows the caller's value: 1 s more given, more left
    assert scrape_metrics(slow_function.metrics_url).get(failures, 0) == before + 2


def test_busy_port_gives_a_clear_message(model_repo: Path, function_server: tuple[Proc, str], tmp_path: Path) -> None:
    import subprocess
    import sys

    port = function_server[1].rsplit(":", 1)[1]
    done = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "function", "--model-repo", str(model_repo), "--port", port],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_bad_repository_and_config_are_reported(tmp_path: Path) -> None:
    import subprocess
    import sys

    missing = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "function", "--model-repo", str(tmp_path / "none"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "m" / "config.yaml").write_text("max_batch_size: -3\n")
    bad = subprocess.run(
        [sys.executable, "-m", "edgeinfer.cli", "function", "--model-repo", str(tmp_path), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "config.yaml: max_batch_size" in bad.stderr
