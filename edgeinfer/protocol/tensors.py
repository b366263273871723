"""Decode request tensors to numpy and encode numpy outputs, validating on the way.

Tensors stay as bytes/numpy: raw contents are viewed with `np.frombuffer`,
never copied through Python lists. Typed contents are accepted too, and the
reply uses the same form as the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.datatypes import (
    CONTENTS_FIELD,
    NUMPY_DTYPES,
    WIRE_DTYPES,
    datatype_of,
    deserialize_bytes,
    serialize_bytes,
)
from edgeinfer.protocol.errors import InvalidArgument

Array = npt.NDArray[np.generic]
_TensorList = Any  # repeated InferInputTensor or InferOutputTensor
_RawList = Any  # repeated bytes

# Hard cap on the elements of one tensor, whatever the message size limit.
MAX_ELEMENTS = 1 << 31

_INT_RANGES = {
    "INT8": (-(1 << 7), (1 << 7) - 1),
    "INT16": (-(1 << 15), (1 << 15) - 1),
    "UINT8": (0, (1 << 8) - 1),
    "UINT16": (0, (1 << 16) - 1),
}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as metadata describes it; -1 marks a free dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_proto(self) -> pb.ModelMetadataResponse.TensorMetadata:
        return pb.ModelMetadataResponse.TensorMetadata(name=self.name, datatype=self.datatype, shape=list(self.shape))


def shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def element_count(name: str, shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidArgument(f"input '{name}': shape {shape_text(shape)} has a negative dimension")
        count *= dim
        if count > MAX_ELEMENTS:
            raise InvalidArgument(f"input '{name}': shape {shape_text(shape)} exceeds {MAX_ELEMENTS} elements")
    return count


def check_shape(name: str, shape: Sequence[int], spec: TensorSpec) -> None:
    if len(shape) != len(spec.shape):
        raise InvalidArgument(
            f"input '{name}': expected rank {len(spec.shape)} with shape {shape_text(spec.shape)}, "
            f"got shape {shape_text(shape)}"
        )
    for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want >= 0 and got != want:
            raise InvalidArgument(
                f"input '{name}': dimension {axis} must be {want} (expected shape "
                f"{shape_text(spec.shape)}), got shape {shape_text(shape)}"
            )


def _from_raw(name: str, datatype: str, shape: Sequence[int], count: int, raw: bytes) -> Array:
    if datatype == "BYTES":
        return deserialize_bytes(raw, count, name).reshape(shape)
    wire = WIRE_DTYPES[datatype]
    expected = count * wire.itemsize
    if len(raw) != expected:
        raise InvalidArgument(
            f"input '{name}': raw content is {len(raw)} bytes, expected {expected} "
            f"({count} x {datatype} for shape {shape_text(shape)})"
        )
    return np.frombuffer(raw, dtype=wire).reshape(shape)


def _from_contents(
    name: str, datatype: str, shape: Sequence[int], count: int, contents: pb.InferTensorContents
) -> Array:
    field = CONTENTS_FIELD.get(datatype)
    if field is None:
        raise InvalidArgument(f"input '{name}': datatype {datatype} must be sent as raw_input_contents")
    values = getattr(contents, field)
    if len(values) != count:
        raise InvalidArgument(
            f"input '{name}': {field} has {len(values)} values, expected {count} for shape {shape_text(shape)}"
        )
    if datatype == "BYTES":
        out = np.empty(count, dtype=np.object_)
        out[:] = list(values)
        return out.reshape(shape)
    bounds = _INT_RANGES.get(datatype)
    if bounds is not None and count:
        wide = np.asarray(values, dtype=np.int64)
        if wide.min() < bounds[0] or wide.max() > bounds[1]:
            raise InvalidArgument(f"input '{name}': a value is out of range for {datatype}")
        return wide.astype(NUMPY_DTYPES[datatype]).reshape(shape)
    return np.asarray(values, dtype=NUMPY_DTYPES[datatype]).reshape(shape)


def decode_inputs(
    request: pb.ModelInferRequest, specs: Mapping[str, TensorSpec] | None = None
) -> tuple[dict[str, Array], bool]:
    """Decode and validate a request's inputs; return them and whether they came raw.

    With `specs`, names, datatypes and shapes are checked against the model's
    metadata and every expected input must be present.
    """
    inputs = request.inputs
    raw_contents = request.raw_input_contents
    use_raw = len(raw_contents) > 0
    if use_raw and len(raw_contents) != len(inputs):
        raise InvalidArgument(
            f"request has {len(inputs)} inputs but {len(raw_contents)} raw_input_contents; "
            "send one raw entry per input, in order"
        )
    decoded: dict[str, Array] = {}
    for index, tensor in enumerate(inputs):
        name = tensor.name
        if name in decoded:
            raise InvalidArgument(f"input '{name}' appears more than once")
        datatype = tensor.datatype
        shape = tuple(tensor.shape)
        if specs is not None:
            spec = specs.get(name)
            if spec is None:
                raise InvalidArgument(f"unexpected input '{name}'; the model expects: {', '.join(sorted(specs))}")
            if datatype != spec.datatype:
                raise InvalidArgument(f"input '{name}': expected datatype {spec.datatype}, got {datatype or '(none)'}")
            check_shape(name, shape, spec)
        elif datatype not in NUMPY_DTYPES:
            raise InvalidArgument(f"input '{name}': unknown datatype '{datatype}'")
        count = element_count(name, shape)
        has_contents = tensor.HasField("contents")
        if use_raw:
            if has_contents:
                raise InvalidArgument(
                    f"input '{name}': raw_input_contents and typed contents cannot be mixed in one request"
                )
            decoded[name] = _from_raw(name, datatype, shape, count, raw_contents[index])
        else:
            decoded[name] = _from_contents(name, datatype, shape, count, tensor.contents)
    if specs is not None and len(decoded) != len(specs):
        missing = sorted(set(specs) - set(decoded))
        raise InvalidArgument(f"missing input(s): {', '.join(missing)}")
    return decoded, use_raw


def batch_size(model: str, inputs: Mapping[str, Array], max_batch_size: int) -> int:
    """The request's batch (dimension 0 of every input), checked; 1 if the model does not batch."""
    if max_batch_size == 0:
        return 1
    sizes = {a.shape[0] for a in inputs.values()}
    if len(sizes) != 1:
        raise InvalidArgument(
            f"model '{model}': all inputs must share the batch dimension 0, got sizes {sorted(sizes)}"
        )
    size = int(sizes.pop())
    if not 1 <= size <= max_batch_size:
        raise InvalidArgument(f"model '{model}': batch size {size} is outside 1..{max_batch_size} (max_batch_size)")
    return size


def requested_outputs(model: str, request: pb.ModelInferRequest, outputs: Sequence[str]) -> set[str] | None:
    """The output names the request asks for (None: all), each checked to exist."""
    if not request.outputs:
        return None
    wanted = {o.name for o in request.outputs}
    unknown = wanted.difference(outputs)
    if unknown:
        raise InvalidArgument(
            f"model '{model}' has no output(s) {', '.join(sorted(unknown))}; outputs are: {', '.join(outputs)}"
        )
    return wanted


def raw_bytes(array: Array, datatype: str) -> bytes:
    """The raw wire form of a tensor: little-endian values, or length-prefixed BYTES."""
    if datatype == "BYTES":
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=WIRE_DTYPES[datatype]).tobytes()


def _fill_contents(contents: pb.InferTensorContents, array: Array, datatype: str) -> None:
    values = getattr(contents, CONTENTS_FIELD[datatype])
    if datatype == "BYTES":
        values.extend(
            x.encode("utf-8") if isinstance(x, str) else bytes(x)  # type: ignore[call-overload]
            for x in array.reshape(-1)
        )
    else:
        values.extend(array.reshape(-1).tolist())


def _append_tensors(tensors: _TensorList, raw_list: _RawList, arrays: Sequence[tuple[str, Array]], raw: bool) -> None:
    typed = [(name, array, datatype_of(array)) for name, array in arrays]
    # A datatype without typed contents (FP16) forces the whole message raw.
    raw = raw or any(datatype not in CONTENTS_FIELD for _, _, datatype in typed)
    for name, array, datatype in typed:
        tensor = tensors.add(name=name, datatype=datatype, shape=array.shape)
        if raw:
            raw_list.append(raw_bytes(array, datatype))
        else:
            _fill_contents(tensor.contents, array, datatype)


def encode_outputs(response: pb.ModelInferResponse, outputs: Sequence[tuple[str, Array]], raw: bool) -> None:
    """Append outputs to a response, raw (little-endian bytes) or as typed contents."""
    _append_tensors(response.outputs, response.raw_output_contents, outputs, raw)


def output_arrays(response: pb.ModelInferResponse) -> dict[str, Array]:
    """Decode a response's outputs to numpy (client side)."""
    result: dict[str, Array] = {}
    raw = response.raw_output_contents
    for index, tensor in enumerate(response.outputs):
        shape = tuple(tensor.shape)
        count = element_count(tensor.name, shape)
        if len(raw):
            result[tensor.name] = _from_raw(tensor.name, tensor.datatype, shape, count, raw[index])
        else:
            result[tensor.name] = _from_contents(tensor.name, tensor.datatype, shape, count, tensor.contents)
    return result


def build_request(
    model: str,
    inputs: Mapping[str, Array],
    *,
    version: str = "",
    request_id: str = "",
    outputs: Sequence[str] = (),
    raw: bool = True,
) -> pb.ModelInferRequest:
    """Build a ModelInferRequest from numpy arrays (client side)."""
    request = pb.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    _append_tensors(request.inputs, request.raw_input_contents, list(inputs.items()), raw)
    for name in outputs:
        request.outputs.add(name=name)
    return request
