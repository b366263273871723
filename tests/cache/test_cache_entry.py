"""Stored values: exact round trip; anything damaged decodes to None."""

from __future__ import annotations

import pytest

from edgeinfer.cache.entry import HEADER_SIZE, decode_entry, encode_entry


def test_round_trip() -> None:
    for payload in (b"", b"x", bytes(range(256)) * 100):
        entry = decode_entry(encode_entry(payload, 1_700_000_000.25, 0.0125))
        assert entry is not None
        assert entry.payload == payload
        assert entry.created_at == 1_700_000_000.25
        assert entry.compute_seconds == 0.0125
    assert len(encode_entry(b"abc", 0, 0)) == HEADER_SIZE + 3


def test_every_flipped_bit_is_detected() -> None:
    data = encode_entry(b"some serialized response", 1_700_000_000.0, 0.5)
    for index in range(len(data)):
        for bit in (0, 3, 7):
            damaged = bytearray(data)
            damaged[index] ^= 1 << bit
            assert decode_entry(bytes(damaged)) is None, (index, bit)


@pytest.mark.parametrize("cut", [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5])
def test_truncated_is_none(cut: int) -> None:
    data = encode_entry(b"0123456789", 1.0, 0.1)
    assert decode_entry(data[:cut]) is None


def test_garbage_and_extra_bytes_are_none() -> None:
    data = encode_entry(b"payload", 1.0, 0.1)
    assert decode_entry(data + b"\x00") is None
    assert decode_entry(b"garbage" * 10) is None
    assert decode_entry(b"EIPC" + bytes(60)) is None
