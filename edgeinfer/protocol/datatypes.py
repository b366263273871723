"""Open Inference Protocol datatypes: numpy mapping, typed contents, BYTES framing.

BYTES tensors travel in raw form as elements each prefixed by a 4-byte
little-endian length, as Triton and KServe do.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np
import numpy.typing as npt

from edgeinfer.protocol.errors import InvalidArgument

NUMPY_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(np.object_),
}
"""Every datatype edgeinfer serves. BF16 is left out: numpy has no bfloat16."""

# Little-endian wire form of each fixed-size type.
WIRE_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    name: dt.newbyteorder("<") for name, dt in NUMPY_DTYPES.items() if name != "BYTES"
}

# ONNX tensor element types as ONNX Runtime names them.
ONNX_TO_DATATYPE: Final[dict[str, str]] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}

# Which InferTensorContents field carries each datatype (FP16 has none: raw only).
CONTENTS_FIELD: Final[dict[str, str]] = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_LENGTH = struct.Struct("<I")


def datatype_of(array: npt.NDArray[np.generic]) -> str:
    """The protocol datatype of a numpy array (object and str arrays are BYTES)."""
    if array.dtype.kind in ("O", "S", "U"):
        return "BYTES"
    for name, dt in NUMPY_DTYPES.items():
        if dt == array.dtype:
            return name
    raise InvalidArgument(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype")


def element_size(datatype: str) -> int:
    """Bytes per element of a fixed-size datatype."""
    return WIRE_DTYPES[datatype].itemsize


def serialize_bytes(array: npt.NDArray[np.generic]) -> bytes:
    """Frame a BYTES tensor: each element as <u32 little-endian length><bytes>."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        data = item.encode("utf-8") if isinstance(item, str) else bytes(item)  # type: ignore[call-overload]
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def deserialize_bytes(raw: bytes, count: int, name: str) -> npt.NDArray[np.object_]:
    """Parse `count` length-prefixed elements; raise InvalidArgument if the framing lies."""
    out = np.empty(count, dtype=np.object_)
    view = memoryview(raw)
    offset = 0
    for i in range(count):
        if offset + 4 > len(view):
            raise InvalidArgument(
                f"input '{name}': BYTES data ends after {i} of {count} elements "
                f"(each element needs a 4-byte length prefix)"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise InvalidArgument(
                f"input '{name}': BYTES element {i} claims {length} bytes but only {len(view) - offset} remain"
            )
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise InvalidArgument(f"input '{name}': {len(view) - offset} trailing bytes after {count} BYTES elements")
    return out
