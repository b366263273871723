"""Protobuf at the byte level, for the gateway's hot path: a reply spliced, a request read by tag and length.

Protobuf lets fields arrive in any order, a later scalar wins and map entries
accumulate, so `payload + suffix` parses as the payload with the request's id
and extra response parameters set. A cache hit is thus answered with a byte
concatenation instead of a parse and a re-serialization.

The other way round, `scan_infer_request` reads a ModelInferRequest's top-level
fields (model, version, id, parameters) without decoding its tensors, and gives
the request's bytes with the id left out: what the wire-level cache key hashes
(cache/wire_key.py) and what is forwarded to a function.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

_LENGTH_DELIMITED = 2
# ModelInferResponse field numbers (open_inference.proto).
_ID = 3
_PARAMETERS = 4
# Map entry and InferParameter field numbers.
_KEY, _VALUE, _STRING_PARAM = 1, 2, 3


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_SMALL = [bytes([v]) for v in range(0x80)]


def _field(number: int, data: bytes) -> bytes:
    return _varint((number << 3) | _LENGTH_DELIMITED) + _varint(len(data)) + data


def parameter_field(key: str, value: str) -> bytes:
    """One string entry of ModelInferResponse.parameters, serialized (callers may keep it)."""
    entry = _field(_KEY, key.encode()) + _field(_VALUE, _field(_STRING_PARAM, value.encode()))
    return _field(_PARAMETERS, entry)


def response_suffix(request_id: str, string_parameters: Mapping[str, str]) -> bytes:
    """Bytes that set `id` and add string `parameters` when appended to a serialized response."""
    parts = [_field(_ID, request_id.encode())] if request_id else []
    parts.extend(parameter_field(key, value) for key, value in string_parameters.items())
    return b"".join(parts)


def id_field(request_id: str) -> bytes:
    return _field(_ID, request_id.encode()) if request_id else b""


# -- reading a serialized ModelInferRequest without parsing it -------------------------------------------------

_VARINT, _FIXED64, _FIXED32 = 0, 1, 5
# ModelInferRequest field numbers (open_inference.proto).
_REQUEST_MODEL_NAME, _REQUEST_MODEL_VERSION, _REQUEST_ID, _REQUEST_PARAMETERS = 1, 2, 3, 4


class WireFormatError(ValueError):
    """Bytes that are not a well-formed protobuf message at the top level."""


def read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it (protobuf's limit: 10 bytes)."""
    result = 0
    shift = 0
    end = len(data)
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireFormatError("varint longer than 10 bytes")
    raise WireFormatError("truncated varint")


@dataclass(frozen=True, slots=True)
class ScannedInferRequest:
    """What a serialized ModelInferRequest says at its top level, read by tag and length: no tensor decoded.

    Protobuf semantics: the last occurrence of a scalar field wins, so `model_name`, `model_version` and
    `request_id` are the last ones sent; `kept` are the spans of `data` that remain once every `id` field is
    left out, which parse to the same request with an empty id.
    """

    data: bytes
    model_name: str
    model_version: str
    request_id: bytes  # the caller's id as sent (valid UTF-8), b"" when absent
    kept: tuple[tuple[int, int], ...]
    parameter_spans: tuple[tuple[int, int], ...]  # the request's `parameters` entries, each a whole field

    def chunks_without_id(self) -> Iterator[memoryview]:
        view = memoryview(self.data)
        for start, end in self.kept:
            yield view[start:end]

    def without_id(self, suffix: bytes = b"") -> bytes:
        """The request as serialized, less its `id` fields, then `suffix` (more fields): the same bytes object
        when there is nothing to leave out or add."""
        if not suffix and len(self.kept) == 1 and self.kept[0] == (0, len(self.data)):
            return self.data
        return b"".join((*self.chunks_without_id(), suffix))

    def parameters_only(self) -> bytes:
        """The request's `parameters` fields alone: parsed as a ModelInferRequest, they give its parameters."""
        view = memoryview(self.data)
        return b"".join(view[start:end] for start, end in self.parameter_spans)


def _utf8(data: bytes | memoryview) -> str | None:
    try:
        return str(data, "utf-8")
    except UnicodeDecodeError:
        return None


def scan_infer_request(data: bytes) -> ScannedInferRequest | None:
    """The top-level fields of a serialized ModelInferRequest, or None when the bytes are anything the parser
    might read differently from this scan (malformed, a group, a string field of the wrong wire type or not
    UTF-8): the caller then parses the request, which says what is wrong.

    One pass over the top-level tags and lengths, inlined (it runs before every gRPC lookup): a one-byte varint,
    by far the usual tag and length, is read without a call."""
    model_name = model_version = ""
    request_id = b""
    kept: list[tuple[int, int]] = []
    parameters: list[tuple[int, int]] = []
    kept_from = 0
    pos, end = 0, len(data)
    try:
        while pos < end:
            start = pos
            tag = data[pos]
            if tag < 0x80:
                pos += 1
            else:
                tag, pos = read_varint(data, pos)
            number, wire_type = tag >> 3, tag & 7
            if number == 0:
                return None
            if wire_type == _LENGTH_DELIMITED:
                length = data[pos]  # IndexError past the end: truncated
                if length < 0x80:
                    pos += 1
                else:
                    length, pos = read_varint(data, pos)
                after = pos + length
            elif wire_type == _VARINT:
                _, after = read_varint(data, pos)
            elif wire_type == _FIXED64:
                after = pos + 8
            elif wire_type == _FIXED32:
                after = pos + 4
            else:
                return None  # a group or an invalid wire type
            if after > end:
                return None
            if number > _REQUEST_PARAMETERS:  # inputs, outputs, raw contents, unknown fields: kept as they are
                pos = after
                continue
            if wire_type != _LENGTH_DELIMITED:
                return None
            if number == _REQUEST_PARAMETERS:
                parameters.append((start, after))
            else:
                try:
                    text = data[pos:after].decode("utf-8")
                except UnicodeDecodeError:
                    return None
                if number == _REQUEST_MODEL_NAME:
                    model_name = text
                elif number == _REQUEST_MODEL_VERSION:
                    model_version = text
                else:
                    request_id = data[pos:after]
                    if start > kept_from:
                        kept.append((kept_from, start))
                    kept_from = after
            pos = after
    except (WireFormatError, IndexError):
        return None
    if kept_from < len(data) or not kept:
        kept.append((kept_from, len(data)))
    return ScannedInferRequest(data, model_name, model_version, request_id, tuple(kept), tuple(parameters))


def request_version_field(version: str) -> bytes:
    """ModelInferRequest's `model_version` field: appended to a request, it sets the version (a later scalar
    wins)."""
    return _field(_REQUEST_MODEL_VERSION, version.encode())


def id_field_bytes(request_id: bytes) -> bytes:
    """ModelInferResponse's `id` field for an id already encoded (a scanned request's)."""
    return _field(_ID, request_id) if request_id else b""
