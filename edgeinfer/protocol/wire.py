"""Append fields to an already serialized ModelInferResponse without parsing it.

Protobuf lets fields arrive in any order, a later scalar wins and map entries
accumulate, so `payload + suffix` parses as the payload with the request's id
and extra response parameters set. A cache hit is thus answered with a byte
concatenation instead of a parse and a re-serialization.
"""

from __future__ import annotations

from collections.abc import Mapping

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
