"""BYTES tensors end to end: a string model served by a real function, raw and typed."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from testkit.hostile import write_echo_text
from testkit.procs import start_function

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol import open_inference_pb2_grpc as pb_grpc
from edgeinfer.protocol.tensors import build_request, output_arrays


@pytest.fixture(scope="module")
def echo_text(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("bytes-repo")
    write_echo_text(root)
    proc, address = start_function(root, tmp_path_factory.mktemp("bytes-logs"))
    yield address
    proc.stop()


@pytest.mark.parametrize("raw", [True, False])
def test_bytes_round_trip(echo_text: str, raw: bool) -> None:
    text = np.array([["héllo".encode(), b""], [b"a" * 1000, b"x y z"]], dtype=np.object_)
    with grpc.insecure_channel(echo_text) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        metadata = stub.ModelMetadata(pb.ModelMetadataRequest(name="echo_text"))
        assert [(t.datatype, list(t.shape)) for t in metadata.inputs] == [("BYTES", [-1, 2])]
        reply = stub.ModelInfer(build_request("echo_text", {"text": text}, raw=raw), timeout=10)
    assert (len(reply.raw_output_contents) > 0) == raw
    out = output_arrays(reply)["same"]
    assert out.shape == (2, 2)
    assert [bytes(v) for v in out.reshape(-1)] == list(text.reshape(-1))


def test_lying_length_prefix_is_invalid_argument(echo_text: str) -> None:
    request = build_request("echo_text", {"text": np.array([[b"ab", b"cd"]], dtype=np.object_)})
    request.raw_input_contents[0] = b"\xff\x00\x00\x00ab\x02\x00\x00\x00cd"
    with grpc.insecure_channel(echo_text) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(request, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "claims 255 bytes" in (info.value.details() or "")
        assert stub.ServerLive(pb.ServerLiveRequest()).live


@pytest.mark.parametrize("raw", [True, False])
def test_an_element_that_is_not_utf8_is_invalid_argument_naming_it(echo_text: str, raw: bool) -> None:
    """ONNX Runtime's string tensors hold text: bytes that are not UTF-8 get INVALID_ARGUMENT naming the input and
    the element (not INTERNAL from ONNX Runtime's encoder), and the next request is served."""
    text = np.array([[b"fine", b"\xff\xfe"]], dtype=np.object_)
    with grpc.insecure_channel(echo_text) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(build_request("echo_text", {"text": text}, raw=raw), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "input 'text' element 1 is not valid UTF-8" in (info.value.details() or "")
        good = np.array([[b"a", b"b"]], dtype=np.object_)
        reply = stub.ModelInfer(build_request("echo_text", {"text": good}, raw=raw), timeout=10)
        assert [bytes(v) for v in output_arrays(reply)["same"].reshape(-1)] == [b"a", b"b"]
