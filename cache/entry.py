"""The stored value: a fixed 40-byte header, then the serialized ModelInferResponse.

Layout (little-endian):

    offset size  field
    0      4     magic b"EIPC"
    4      2     FORMAT_VERSION
    6      2     flags (0; anything else is rejected)
    8      8     created_at, unix seconds (f64)
    16     8     compute_seconds (f64): what a miss costs, XFetch's delta
    24     8     payload length (u64)
    32     8     checksum: BLAKE2b-64 over bytes 0..32 and the payload
    40     ...   payload

Anything that does not parse exactly (another magic or version, short or
long, a flipped bit anywhere) decodes to None: the reader treats it as a miss.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass
from typing import Final

MAGIC: Final = b"EIPC"
FORMAT_VERSION: Final = 1
_FIXED = struct.Struct("<4sHHddQ")
_CHECKSUM_SIZE: Final = 8
HEADER_SIZE: Final = _FIXED.size + _CHECKSUM_SIZE


@dataclass(frozen=True, slots=True)
class Entry:
    payload: bytes
    created_at: float
    compute_seconds: float


def _checksum(fixed: bytes | memoryview, payload: bytes | memoryview) -> bytes:
    hasher = hashlib.blake2b(fixed, digest_size=_CHECKSUM_SIZE)
    hasher.update(payload)
    return hasher.digest()


def encode_entry(payload: bytes, created_at: float, compute_seconds: float) -> bytes:
    """Header plus payload, ready for SET."""
    compute = compute_seconds if math.isfinite(compute_seconds) and compute_seconds > 0 else 0.0
    fixed = _FIXED.pack(MAGIC, FORMAT_VERSION, 0, created_at, compute, len(payload))
    return b"".join((fixed, _checksum(fixed, payload), payload))


def decode_entry(data: bytes | memoryview) -> Entry | None:
    """The entry in `data`, or None if it is not exactly one intact entry of this format."""
    view = memoryview(data)
    if len(view) < HEADER_SIZE:
        return None
    magic, version, flags, created_at, compute, length = _FIXED.unpack_from(view)
    if magic != MAGIC or version != FORMAT_VERSION or flags != 0 or length != len(view) - HEADER_SIZE:
        return None
    if not (math.isfinite(created_at) and math.isfinite(compute) and compute >= 0):
        return None
    fixed = view[: _FIXED.size]
    payload = view[HEADER_SIZE:]
    if _checksum(fixed, payload) != view[_FIXED.size : HEADER_SIZE]:
        return None
    return Entry(bytes(payload), created_at, compute)
