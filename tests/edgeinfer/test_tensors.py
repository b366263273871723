from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.datatypes import CONTENTS_FIELD, NUMPY_DTYPES, deserialize_bytes, serialize_bytes
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.tensors import TensorSpec, build_request, decode_inputs, encode_outputs, output_arrays

FIXED = [d for d in NUMPY_DTYPES if d != "BYTES"]


def sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    rng = np.random.default_rng(1)
    if datatype == "BYTES":
        return np.array([b"a", b"", b"\x00\xffz", "h\u00e9".encode(), b"q" * 300, b"x"], dtype=object).reshape(shape)
    if datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(bool)
    dtype = NUMPY_DTYPES[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("datatype", list(NUMPY_DTYPES))
@pytest.mark.parametrize("raw", [True, False])
def test_every_datatype_round_trips_raw_and_typed(datatype: str, raw: bool) -> None:
    array = sample(datatype)
    request = build_request("m", {"x": array}, raw=raw)
    sent_raw = raw or datatype not in CONTENTS_FIELD
    assert bool(len(request.raw_input_contents)) == sent_raw
    decoded, was_raw = decode_inputs(request, {"x": TensorSpec("x", datatype, (-1, 3))})
    assert was_raw == sent_raw
    np.testing.assert_array_equal(decoded["x"], array)
    response = pb.ModelInferResponse()
    encode_outputs(response, [("y", decoded["x"])], raw=was_raw)
    assert response.outputs[0].datatype == datatype
    np.testing.assert_array_equal(output_arrays(response)["y"], array)


def test_raw_and_typed_decode_to_the_same_tensor() -> None:
    array = sample("FP32")
    raw, _ = decode_inputs(build_request("m", {"x": array}, raw=True))
    typed, _ = decode_inputs(build_request("m", {"x": array}, raw=False))
    assert raw["x"].tobytes() == typed["x"].tobytes()


def test_bytes_framing_detects_lies() -> None:
    good = serialize_bytes(np.array([b"ab", b"c"], dtype=object))
    assert list(deserialize_bytes(good, 2, "t")) == [b"ab", b"c"]
    with pytest.raises(InvalidArgument, match="claims 1000 bytes"):
        deserialize_bytes(b"\xe8\x03\x00\x00abc", 1, "t")
    with pytest.raises(InvalidArgument, match="ends after 1 of 2"):
        deserialize_bytes(good[:6], 2, "t")
    with pytest.raises(InvalidArgument, match="trailing bytes"):
        deserialize_bytes(good + b"zz", 2, "t")


SPEC = {"features": TensorSpec("features", "FP32", (-1, 4))}


def request_with(shape: list[int], datatype: str = "FP32", raw: bytes | None = None) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="features", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw if raw is not None else b"\x00" * 4 * int(np.prod(shape)))
    return request


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (request_with([1, 5]), "dimension 1 must be 4"),
        (request_with([4]), "expected rank 2"),
        (request_with([1, 4], "FP64"), "expected datatype FP32, got FP64"),
        (request_with([1, 4], raw=b"\x00" * 15), "raw content is 15 bytes, expected 16"),
        (request_with([-1, 4]), "negative dimension"),
        (request_with([1 << 40, 4], raw=b""), "exceeds"),
    ],
)
def test_invalid_tensors_name_the_tensor_and_expectation(request_: pb.ModelInferRequest, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        decode_inputs(request_, SPEC)
    assert "features" in info.value.message


def test_structural_errors() -> None:
    dup = request_with([1, 4])
    dup.inputs.add(name="features", datatype="FP32", shape=[1, 4])
    dup.raw_input_contents.append(b"\x00" * 16)
    with pytest.raises(InvalidArgument, match="more than once"):
        decode_inputs(dup, SPEC)
    extra = request_with([1, 4])
    extra.inputs.add(name="other", datatype="FP32", shape=[1])
    extra.raw_input_contents.append(b"\x00" * 4)
    with pytest.raises(InvalidArgument, match="unexpected input 'other'"):
        decode_inputs(extra, SPEC)
    missing = pb.ModelInferRequest(model_name="m")
    with pytest.raises(InvalidArgument, match="missing input"):
        decode_inputs(missing, SPEC)
    mixed = request_with([1, 4])
    mixed.inputs[0].contents.fp32_contents.extend([0.0] * 4)
    with pytest.raises(InvalidArgument, match="cannot be mixed"):
        decode_inputs(mixed, SPEC)
    counts = request_with([1, 4])
    counts.raw_input_contents.append(b"")
    with pytest.raises(InvalidArgument, match="1 inputs but 2 raw_input_contents"):
        decode_inputs(counts, SPEC)
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="features", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1.0] * 3)
    with pytest.raises(InvalidArgument, match="fp32_contents has 3 values, expected 4"):
        decode_inputs(typed, SPEC)


def test_typed_int8_out_of_range_is_rejected() -> None:
    request = pb.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="INT8", shape=[2]).contents.int_contents.extend([1, 300])
    with pytest.raises(InvalidArgument, match="out of range for INT8"):
        decode_inputs(request, {"x": TensorSpec("x", "INT8", (2,))})
