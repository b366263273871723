"""The one request a run sends: random tensors shaped by the model's inputs, serialized once."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeinfer.loadgen.options import BenchError
from edgeinfer.protocol.datatypes import NUMPY_DTYPES
from edgeinfer.protocol.tensors import Array, TensorSpec, build_request


def parse_input(text: str) -> TensorSpec:
    """Parse `NAME:DATATYPE:d1,d2,...` (-1 marks a batch dimension)."""
    name, sep, rest = text.partition(":")
    datatype, sep2, dims = rest.partition(":")
    datatype = datatype.upper()
    if not (name and sep and sep2 and dims):
        raise BenchError(f"--input {text!r}: expected NAME:DATATYPE:d1,d2,...")
    if datatype not in NUMPY_DTYPES:
        raise BenchError(f"--input {text!r}: unknown datatype {datatype}; one of {', '.join(NUMPY_DTYPES)}")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise BenchError(f"--input {text!r}: dimensions must be integers") from None
    if any(d < -1 for d in shape):
        raise BenchError(f"--input {text!r}: a dimension must be -1 or non-negative")
    return TensorSpec(name, datatype, shape)


def random_tensor(spec: TensorSpec, batch_size: int, rng: np.random.Generator) -> Array:
    shape = tuple(batch_size if d < 0 else d for d in spec.shape)
    dtype = NUMPY_DTYPES[spec.datatype]
    if spec.datatype == "BYTES":
        out = np.empty(shape, dtype=np.object_)
        for index in np.ndindex(shape):
            out[index] = bytes(rng.integers(ord("a"), ord("z") + 1, size=8, dtype=np.uint8))
        return out
    if spec.datatype == "BOOL":
        return rng.integers(0, 2, size=shape).astype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    # Small non-negative integers stay valid as ids, indices and categories.
    return rng.integers(0, 10, size=shape).astype(dtype)


def build_payload(
    model: str,
    specs: Sequence[TensorSpec],
    *,
    batch_size: int = 1,
    typed: bool = False,
    version: str = "",
    seed: int = 0,
) -> bytes:
    """The serialized ModelInferRequest, built once and resent unchanged by every worker."""
    rng = np.random.default_rng(seed)
    arrays = {spec.name: random_tensor(spec, batch_size, rng) for spec in specs}
    request = build_request(model, arrays, version=version, raw=not typed)
    return request.SerializeToString()


def unique_offset(payload: bytes) -> int:
    """Where the first raw input's bytes start in the serialized request (a counter goes there)."""
    from edgeinfer.protocol import open_inference_pb2 as pb

    request = pb.ModelInferRequest.FromString(payload)
    if not len(request.raw_input_contents) or len(request.raw_input_contents[0]) < 8:
        raise ValueError("--unique needs raw contents and a first input of at least 8 bytes")
    return payload.rindex(request.raw_input_contents[0])
