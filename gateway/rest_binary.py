"""Triton's binary tensor data extension for the REST front (Triton's docs/protocol/extension_binary_data.md).

A body is a JSON header of `Inference-Header-Content-Length` bytes followed by each binary tensor's bytes, in the
order the header lists the tensors; each such tensor says how many bytes it has in its `binary_data_size`
parameter. Bytes are little-endian, row major; a BYTES element is a 4-byte little-endian length and its bytes. Every
size here is checked against what the body really holds, so a body that lies gets a 400 naming the tensor.

Also the compression of bodies: requests arrive decompressed (aiohttp undoes Content-Encoding gzip/deflate within
the body limit); replies are compressed when Accept-Encoding asks for gzip or deflate, as Triton does.
"""

from __future__ import annotations

import asyncio
import gzip
import struct
import zlib
from collections.abc import Sequence
from typing import Final

from edgeinfer.protocol.datatypes import WIRE_DTYPES
from edgeinfer.protocol.errors import InvalidArgument
from edgeinfer.protocol.tensors import shape_text

INFERENCE_HEADER: Final = "Inference-Header-Content-Length"
BINARY_CONTENT_TYPE: Final = "application/octet-stream"
# Compressing more than this runs off the event loop (a few ms of zlib per MiB).
_COMPRESS_INLINE_BYTES: Final = 256 << 10
_LENGTH = struct.Struct("<I")
_ENCODINGS: Final = ("gzip", "deflate")


# A byte count of more digits than this exceeds any body (and int() of thousands of digits is refused anyway).
_MAX_LENGTH_DIGITS: Final = 18
# wbits for zlib: gzip's container, and HTTP's "deflate" (the zlib format, which tritonclient sends).
_WBITS: Final = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyTooLarge(ValueError):
    """A compressed body that would decompress past the body limit."""


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """A request body with its Content-Encoding (gzip or deflate) undone, at most `limit` bytes of it.

    Done here, not by aiohttp, so that a corrupt or cut stream is one clear 400 (InvalidArgument) and a
    decompression bomb stops at the limit (BodyTooLarge), with nothing left half-read on the connection.
    """
    wbits = _WBITS.get(encoding)
    if wbits is None:
        return body
    decoder = zlib.decompressobj(wbits)
    try:
        data = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidArgument(f"request body is not valid {encoding} data: {exc}") from None
    if len(data) > limit:
        raise BodyTooLarge(f"the {encoding} body decompresses past the limit of {limit} bytes")
    if not decoder.eof:
        raise InvalidArgument(f"request body is not valid {encoding} data: the stream is cut short")
    if decoder.unused_data:
        raise InvalidArgument(
            f"request body is not valid {encoding} data: {len(decoder.unused_data)} bytes follow the end of the stream"
        )
    return data


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview]:
    """The JSON header and the binary part of a request body.

    Without `Inference-Header-Content-Length` the whole body is the header. The value must be a decimal count of
    bytes that the body holds; 0 (Triton's raw binary request, no header at all) is refused with what to send.
    """
    view = memoryview(body)
    if header_length is None:
        return view, view[len(view) :]
    text = header_length.strip()
    if not text.isdigit() or not text.isascii():
        raise InvalidArgument(f"{INFERENCE_HEADER} must be a byte count, got {text[:40]!r}")
    # int() of thousands of digits is refused (and slow): a count this long is past any body anyway.
    length = int(text) if len(text) <= _MAX_LENGTH_DIGITS else len(view) + 1
    if length > len(view):
        raise InvalidArgument(
            f"{INFERENCE_HEADER} is {text[:40]} but the body has only {len(view)} bytes; "
            "it must be the length of the JSON header that starts the body"
        )
    if length == 0:
        raise InvalidArgument(
            f"{INFERENCE_HEADER}: 0 (a body of tensor bytes without a JSON header) is not supported; "
            "send the JSON inference header first and give each input's size in its 'binary_data_size' parameter"
        )
    return view[:length], view[length:]


class BinarySection:
    """Hands out the binary part of a body to the inputs in order, then checks that nothing was left over."""

    def __init__(self, data: memoryview, header_given: bool) -> None:
        self._data = data
        self._offset = 0
        self._header_given = header_given

    def take(self, name: str, size: int) -> bytes:
        if not self._header_given:
            raise InvalidArgument(
                f"input '{name}' has 'binary_data_size' but the request has no {INFERENCE_HEADER} header; "
                "send it with the length of the JSON header"
            )
        left = len(self._data) - self._offset
        if size > left:
            raise InvalidArgument(
                f"input '{name}': binary_data_size is {size} bytes but only {left} bytes of binary data remain "
                f"after the JSON header and the inputs before it"
            )
        start = self._offset
        self._offset += size
        return bytes(self._data[start : self._offset])

    def finish(self) -> None:
        left = len(self._data) - self._offset
        if left:
            raise InvalidArgument(
                f"{left} bytes after the JSON header belong to no input: the inputs' binary_data_size "
                f"add up to {self._offset} bytes of the {len(self._data)} sent"
            )


def binary_data_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgument(f"input '{name}': binary_data_size must be a non-negative integer, got {value!r:.40}")
    return value


def check_binary_input(name: str, datatype: str, shape: Sequence[int], count: int, data: bytes) -> None:
    """A binary input's bytes fit its datatype and shape: the fixed size, or `count` well-framed BYTES elements."""
    if datatype == "BYTES":
        check_bytes_framing(name, data, count)
        return
    expected = count * WIRE_DTYPES[datatype].itemsize
    if len(data) != expected:
        raise InvalidArgument(
            f"input '{name}': binary_data_size is {len(data)} bytes, expected {expected} "
            f"({count} x {datatype} for shape {shape_text(shape)})"
        )


def check_bytes_framing(name: str, data: bytes, count: int) -> None:
    """`count` length-prefixed elements exactly fill `data` (walks the prefixes; builds no elements)."""
    offset = 0
    size = len(data)
    for index in range(count):
        if offset + 4 > size:
            raise InvalidArgument(
                f"input '{name}': BYTES data ends after {index} of {count} elements "
                "(each element is a 4-byte little-endian length, then its bytes)"
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4 + length
        if offset > size:
            raise InvalidArgument(
                f"input '{name}': BYTES element {index} claims {length} bytes but only "
                f"{size - (offset - length)} remain in its binary_data_size"
            )
    if offset != size:
        raise InvalidArgument(f"input '{name}': {size - offset} bytes left over after {count} BYTES elements")


def reply_encoding(accept_encoding: str | None) -> str | None:
    """The encoding to compress a reply with: the first of gzip or deflate that Accept-Encoding allows."""
    if not accept_encoding:
        return None
    for item in accept_encoding.split(","):
        token, _, params = item.partition(";")
        token = token.strip().lower()
        if token not in _ENCODINGS:
            continue
        quality = params.strip().lower()
        if quality.startswith("q=") and _quality(quality[2:]) <= 0:
            continue
        return token
    return None


def _quality(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0


def _compress(body: bytes, encoding: str) -> bytes:
    # tritonclient undoes "deflate" with zlib.decompress: the zlib format, as HTTP means it.
    return gzip.compress(body, compresslevel=6) if encoding == "gzip" else zlib.compress(body)


async def compress(body: bytes, encoding: str) -> bytes:
    if len(body) <= _COMPRESS_INLINE_BYTES:
        return _compress(body, encoding)
    return await asyncio.to_thread(_compress, body, encoding)
