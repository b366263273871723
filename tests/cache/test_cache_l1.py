"""L1: byte bound, LRU order, TTL on an injected clock."""

from __future__ import annotations

import random

from edgeinfer.cache.l1 import ENTRY_OVERHEAD_BYTES, L1Cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_byte_bound_holds_under_many_puts() -> None:
    l1 = L1Cache(64 * 1024, max_entry_fraction=0.25)
    rng = random.Random(1)
    for i in range(5000):
        l1.put(i.to_bytes(16, "big"), bytes(rng.randrange(0, 8000)), 60)
        assert l1.size_bytes <= 64 * 1024
    assert l1.evictions > 0
    assert 0 < len(l1) < 5000
    # The accounting matches what is actually held.
    held = [l1.get(i.to_bytes(16, "big")) for i in range(5000)]
    assert sum(len(h.payload) + 16 + ENTRY_OVERHEAD_BYTES for h in held if h is not None) == l1.size_bytes


def test_entry_count_bound() -> None:
    l1 = L1Cache(1 << 20, max_entries=3)
    for k in (b"a", b"b", b"c", b"d"):
        l1.put(k, b"v", 60)
    assert len(l1) == 3 and l1.get(b"a") is None


def test_too_large_is_not_stored_and_replaces_nothing_stale() -> None:
    l1 = L1Cache(10_000, max_entry_fraction=0.5)
    assert l1.put(b"k", b"small", 60)
    assert not l1.put(b"k", bytes(6000), 60)
    assert l1.get(b"k") is None
    assert l1.rejected_too_large == 1
    assert l1.size_bytes == 0


def test_lru_order() -> None:
    size = 100 + 1 + ENTRY_OVERHEAD_BYTES
    l1 = L1Cache(3 * size, max_entry_fraction=1.0)
    for k in (b"a", b"b", b"c"):
        assert l1.put(k, bytes(100), 60)
    assert l1.get(b"a") is not None  # a is now the most recent; b the least
    l1.put(b"d", bytes(100), 60)
    assert l1.get(b"b") is None
    assert [k for k in (b"a", b"c", b"d") if l1.get(k) is not None] == [b"a", b"c", b"d"]
    assert l1.evictions == 1
    # Replacing a key moves it to the front and keeps the byte count exact.
    l1.put(b"a", bytes(100), 60)
    assert l1.size_bytes == 3 * size


def test_ttl_expiry_with_injected_clock() -> None:
    clock = Clock()
    l1 = L1Cache(1 << 20, clock=clock)
    l1.put(b"short", b"v", 1.0)
    l1.put(b"long", b"v", 10.0)
    clock.now += 0.999
    assert l1.get(b"short") is not None
    clock.now += 0.001
    assert l1.get(b"short") is None
    assert l1.expirations == 1
    assert l1.get(b"long") is not None
    assert len(l1) == 1
    assert not l1.put(b"zero", b"v", 0)


def test_expired_entries_leave_before_live_ones_are_evicted() -> None:
    clock = Clock()
    size = 10 + 1 + ENTRY_OVERHEAD_BYTES
    l1 = L1Cache(2 * size, max_entry_fraction=1.0, clock=clock)
    l1.put(b"a", bytes(10), 1.0)
    l1.put(b"b", bytes(10), 100.0)
    clock.now += 2
    l1.put(b"c", bytes(10), 100.0)
    assert l1.evictions == 0 and l1.expirations == 1
    assert l1.get(b"b") is not None and l1.get(b"c") is not None
