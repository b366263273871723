"""The wire-level cache key: a ModelInfer request looked up by its bytes, before anything is parsed.

The canonical key (cache/key.py) needs the request decoded; this one hashes the
serialized request as it arrived, less its `id` fields (edgeinfer/protocol/wire.py
scans them out by tag and length), with what decides the answer outside the
bytes: the tenant, the RESOLVED version (an unversioned request resolves to the
model's newest), and a tag of the model's metadata the request was validated
against. Two requests with equal wire keys are the same bytes up to their ids
for the same tenant, version and metadata, so they parse to the same request
and get the same canonical key: a wire entry can only be one that the canonical
path filled for the same request (tests/cache/test_wire_key.py checks it).

The converse does not hold: raw and typed contents of one tensor, or fields in
another order, share a canonical key under different wire keys; a wire miss
falls back to the canonical key, which fills the wire entry.

Layout, hashed with BLAKE2b-256 under its own personalization (`edgeinfer.wire`,
so a wire key never equals a canonical one, whose hash is personalized
`edgeinfer.cache`); integers little-endian, `str` a u32 length then UTF-8:

    u16   KEY_VERSION          the canonical layout's version: bumping it retires wire keys too
    u16   WIRE_KEY_VERSION
    str   tenant
    str   model name
    str   model version        resolved
    str   model tag            bytes of the metadata digest the request was validated against
    u64   length L
    L     the request's bytes without its id fields
"""

from __future__ import annotations

import functools
import hashlib
import struct
from typing import Any, Final

from google.protobuf.message import DecodeError

from edgeinfer.cache.key import DIGEST_SIZE, KEY_VERSION, uncacheable_reason
from edgeinfer.protocol import open_inference_pb2 as pb
from edgeinfer.protocol.wire import ScannedInferRequest

WIRE_KEY_VERSION: Final = 1
_PERSON: Final = b"edgeinfer.wire"
# In a serialized request only when a tensor has a shared-memory parameter (all three share the prefix), whose
# data is not in the request: such a request is never cached (uncacheable_reason), so it is never looked up.
_SHARED_MEMORY_MARK: Final = b"shared_memory_"
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _text(value: str | bytes) -> bytes:
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
    return _U32.pack(len(data)) + data


def wire_cacheable(scanned: ScannedInferRequest) -> bool:
    """Whether the canonical path may cache the request, judged from its top-level fields: uncacheable_reason on
    its parameters alone (the client's opt-out, sequence parameters), and no shared-memory tensor. False also
    where unsure (a parameter entry that does not parse): the request then takes the canonical path."""
    if _SHARED_MEMORY_MARK in scanned.data:
        return False
    if not scanned.parameter_spans:
        return True
    try:
        parameters = pb.ModelInferRequest.FromString(scanned.parameters_only())
    except DecodeError:
        return False
    return uncacheable_reason(parameters) is None


def wire_key(scanned: ScannedInferRequest, *, tenant: str, version: str, model_tag: bytes) -> bytes:
    """The BLAKE2b-256 digest of the layout above. `version` is the resolved version, `model_tag` identifies the
    metadata the model's requests are validated against (a change of inputs, versions or cache settings gives
    new keys)."""
    hasher = _hasher_after_header(tenant, scanned.model_name, version, model_tag).copy()
    hasher.update(_U64.pack(sum(end - start for start, end in scanned.kept)))
    data = scanned.data
    for start, end in scanned.kept:
        hasher.update(data[start:end] if (start, end) != (0, len(data)) else data)
    digest: bytes = hasher.digest()
    return digest


@functools.lru_cache(maxsize=4096)
def _hasher_after_header(tenant: str, model: str, version: str, model_tag: bytes) -> Any:
    """The hash state after the header, kept per (tenant, model, version, metadata): few of them (routed models,
    their versions, configured tenants), and each request's key then only hashes its own bytes."""
    hasher = hashlib.blake2b(digest_size=DIGEST_SIZE, person=_PERSON)
    hasher.update(
        b"".join(
            (
                _U16.pack(KEY_VERSION),
                _U16.pack(WIRE_KEY_VERSION),
                _text(tenant),
                _text(model),
                _text(version),
                _text(model_tag),
            )
        )
    )
    return hasher
