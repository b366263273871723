"""Prediction cache keys: a versioned, unambiguous encoding of what decides a result, hashed with BLAKE2b.

Two requests share a key exactly when they must get the same response: the
same tenant, model, resolved version, input names/datatypes/shapes/bytes,
requested outputs with their parameters, and request parameters that can
change results. Every variable-length field carries its length, every
parameter value carries its type, and collections are sorted, so no two
different requests encode to the same bytes. The layout is described byte by
byte in docs/cache.md; bump KEY_VERSION whenever it changes.
"""

from __future__ import annotations

import enum
import hashlib
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.tensors import Array, raw_bytes

KEY_VERSION: Final = 1
"""Written first into every encoding: a layout change can never collide with old keys."""

DIGEST_SIZE: Final = 32
# Domain separation: the same bytes hashed for another purpose give another digest.
_PERSON: Final = b"edgeinfer.cache"

NON_SEMANTIC_PARAMETERS: Final[frozenset[str]] = frozenset(
    {
        "cache",  # cache control itself (see uncacheable_reason)
        "priority",  # scheduling only
        "timeout",  # a deadline, not an input
        "binary_data_output",  # HTTP output framing; values are identical
        "headers",  # forwarded transport headers
        "triton_enable_empty_final_response",  # streaming framing only
    }
)
"""Request parameters that never change the outputs, so they stay out of the key."""

NON_SEMANTIC_INPUT_PARAMETERS: Final[frozenset[str]] = frozenset({"binary_data_size"})
"""Input-tensor parameters that only describe transport framing."""

NON_SEMANTIC_OUTPUT_PARAMETERS: Final[frozenset[str]] = frozenset({"binary_data"})
"""Requested-output parameters that only describe transport framing (`classification` is kept)."""

# Requests whose result depends on state outside the request (sequence batching)
# or lands outside the response (shared memory) are never cached.
_STATEFUL_PARAMETERS: Final = frozenset({"sequence_id", "sequence_start", "sequence_end"})
_SHARED_MEMORY_PARAMETERS: Final = frozenset(
    {"shared_memory_region", "shared_memory_offset", "shared_memory_byte_size"}
)
_CACHE_OFF: Final = frozenset({"false", "off", "no", "0", "bypass", "none"})

_U8 = struct.Struct("<B")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_CANONICAL_NAN: Final = _F64.pack(math.nan)


class ParamType(enum.IntEnum):
    """The type tag written before a parameter value; numbers match InferParameter's oneof fields."""

    UNSET = 0
    BOOL = 1
    INT64 = 2
    STRING = 3
    DOUBLE = 4
    UINT64 = 5


ParamScalar = bool | int | str | float


@dataclass(frozen=True, slots=True)
class ParamValue:
    """An InferParameter value with its type, so 1 (int64), 1 (uint64), 1.0 and "1" all differ."""

    type: ParamType
    value: ParamScalar | None = None

    @classmethod
    def of(cls, value: ParamScalar) -> ParamValue:
        """Infer the type of a Python value: ints that fit int64 are INT64, larger ones UINT64."""
        if isinstance(value, bool):
            return cls(ParamType.BOOL, value)
        if isinstance(value, int):
            return cls(ParamType.INT64 if value < (1 << 63) else ParamType.UINT64, value)
        if isinstance(value, float):
            return cls(ParamType.DOUBLE, value)
        return cls(ParamType.STRING, value)

    @classmethod
    def from_proto(cls, param: pb.InferParameter) -> ParamValue:
        choice = param.WhichOneof("parameter_choice")
        if choice == "bool_param":
            return cls(ParamType.BOOL, param.bool_param)
        if choice == "int64_param":
            return cls(ParamType.INT64, param.int64_param)
        if choice == "string_param":
            return cls(ParamType.STRING, param.string_param)
        if choice == "double_param":
            return cls(ParamType.DOUBLE, param.double_param)
        if choice == "uint64_param":
            return cls(ParamType.UINT64, param.uint64_param)
        return cls(ParamType.UNSET)


Params = Mapping[str, ParamValue]


@dataclass(frozen=True, slots=True)
class InputPart:
    """One input tensor. `data` is its canonical raw form: little-endian values, BYTES length-prefixed."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | bytearray | memoryview
    parameters: Params = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputPart:
    """One requested output and its parameters (e.g. `classification`)."""

    name: str
    parameters: Params = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CacheKeyParts:
    """Everything that decides a prediction. `version` is the RESOLVED version, never "" or "latest"."""

    tenant: str
    model: str
    version: str
    inputs: Sequence[InputPart]
    outputs: Sequence[OutputPart] = ()
    parameters: Params = field(default_factory=dict)


def _text(value: str) -> bytes:
    # surrogatepass: a str that is not valid UTF-8 still encodes deterministically.
    data = value.encode("utf-8", "surrogatepass")
    return _U32.pack(len(data)) + data


def _param_value(param: ParamValue) -> bytes:
    tag = _U8.pack(param.type)
    value = param.value
    if param.type is ParamType.BOOL:
        return tag + _U8.pack(1 if value else 0)
    if param.type is ParamType.INT64:
        assert isinstance(value, int)
        return tag + _I64.pack(value)  # struct.error outside int64: not a valid InferParameter
    if param.type is ParamType.UINT64:
        assert isinstance(value, int)
        return tag + _U64.pack(value)
    if param.type is ParamType.DOUBLE:
        assert isinstance(value, float | int)
        number = float(value)
        # Every NaN payload means the same thing to a model.
        return tag + (_CANONICAL_NAN if math.isnan(number) else _F64.pack(number))
    if param.type is ParamType.STRING:
        assert isinstance(value, str)
        return tag + _text(value)
    return tag


def _params(params: Params) -> bytes:
    items = sorted(params.items())
    return _U32.pack(len(items)) + b"".join(_text(k) + _param_value(v) for k, v in items)


def encode_parts(parts: CacheKeyParts) -> Iterable[bytes | bytearray | memoryview]:
    """The canonical encoding as chunks (tensor bytes are yielded as given, never copied)."""
    yield _U16.pack(KEY_VERSION)
    yield _text(parts.tenant) + _text(parts.model) + _text(parts.version)
    # By name (a stable sort: duplicate names, which decode_inputs rejects anyway, keep their order).
    inputs = sorted(parts.inputs, key=lambda part: part.name)
    yield _U32.pack(len(inputs))
    for part in inputs:
        shape = b"".join(_I64.pack(d) for d in part.shape)
        yield _text(part.name) + _text(part.datatype) + _U32.pack(len(part.shape)) + shape
        yield _params(part.parameters)
        data = part.data
        yield _U64.pack(data.nbytes if isinstance(data, memoryview) else len(data))
        yield data
    # By name; the encoding breaks ties between duplicate names deterministically.
    outputs = sorted((o.name, _text(o.name) + _params(o.parameters)) for o in parts.outputs)
    yield _U32.pack(len(outputs)) + b"".join(encoded for _, encoded in outputs)
    yield _params(parts.parameters)


def cache_key(parts: CacheKeyParts) -> bytes:
    """The BLAKE2b-256 digest of the canonical encoding of `parts`."""
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE, person=_PERSON)
    for chunk in encode_parts(parts):
        hasher.update(chunk)
    return hasher.digest()


def _semantic(params: Mapping[str, pb.InferParameter], denied: frozenset[str]) -> dict[str, ParamValue]:
    return {k: ParamValue.from_proto(v) for k, v in params.items() if k not in denied}


def key_parts_from_request(
    request: pb.ModelInferRequest, decoded: Mapping[str, Array], *, tenant: str, version: str
) -> CacheKeyParts:
    """Key parts of a validated request; `decoded` is decode_inputs' output, `version` the resolved version.

    Raw contents are already canonical and are used as sent (no copy); typed
    contents are converted with raw_bytes, so both forms give the same key.
    """
    raw = request.raw_input_contents
    inputs = [
        InputPart(
            name=tensor.name,
            datatype=tensor.datatype,
            shape=tuple(tensor.shape),
            data=raw[index] if len(raw) else raw_bytes(decoded[tensor.name], tensor.datatype),
            parameters=_semantic(tensor.parameters, NON_SEMANTIC_INPUT_PARAMETERS),
        )
        for index, tensor in enumerate(request.inputs)
    ]
    outputs = [
        OutputPart(name=out.name, parameters=_semantic(out.parameters, NON_SEMANTIC_OUTPUT_PARAMETERS))
        for out in request.outputs
    ]
    return CacheKeyParts(
        tenant=tenant,
        model=request.model_name,
        version=version,
        inputs=inputs,
        outputs=outputs,
        parameters=_semantic(request.parameters, NON_SEMANTIC_PARAMETERS),
    )


def uncacheable_reason(request: pb.ModelInferRequest) -> str | None:
    """Why a request must bypass the cache, or None if it may be cached.

    Bypassed: the client opted out (`cache` parameter false/"off"/"no"/"bypass"),
    sequence (stateful) requests, and shared-memory inputs or outputs.
    """
    if "cache" in request.parameters:
        value = ParamValue.from_proto(request.parameters["cache"]).value
        off = value.strip().lower() in _CACHE_OFF if isinstance(value, str) else value is not None and not value
        if off:
            return "client disabled caching"
    if _STATEFUL_PARAMETERS.intersection(request.parameters):
        return "sequence (stateful) request"
    tensors: list[pb.ModelInferRequest.InferInputTensor | pb.ModelInferRequest.InferRequestedOutputTensor] = [
        *request.inputs,
        *request.outputs,
    ]
    if any(_SHARED_MEMORY_PARAMETERS.intersection(t.parameters) for t in tensors):
        return "shared-memory tensors"
    return None
