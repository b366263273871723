"""A bounded, TTL-aware, in-process LRU of cached responses.

Bounded in bytes (and optionally in entries) so a burst of large responses
cannot grow the gateway's memory; get and put are O(1) on an OrderedDict.
Entries whose TTL has passed are misses and are dropped when seen. Not
thread-safe: it lives on one event loop.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

# Rough per-entry cost beyond the payload and key (the OrderedDict slot, the
# item object, the bytes headers), so many tiny entries still count.
ENTRY_OVERHEAD_BYTES: Final = 160


@dataclass(frozen=True, slots=True)
class L1Item:
    payload: bytes
    expires_at: float  # on the cache's clock
    compute_seconds: float
    size: int


class L1Cache:
    """LRU keyed by cache digest. `max_entry_fraction` keeps one response from flushing the rest."""

    def __init__(
        self,
        max_bytes: int,
        *,
        max_entries: int | None = None,
        max_entry_fraction: float = 0.125,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        if max_entries is not None and max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.max_item_bytes = int(max_bytes * max_entry_fraction)
        self.clock = clock
        self._items: OrderedDict[bytes, L1Item] = OrderedDict()
        self._bytes = 0
        self.evictions = 0
        self.expirations = 0
        self.rejected_too_large = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def size_bytes(self) -> int:
        """Accounted size of everything held, payloads plus per-entry overhead."""
        return self._bytes

    def get(self, key: bytes) -> L1Item | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item.expires_at <= self.clock():
            self._remove(key)
            self.expirations += 1
            return None
        self._items.move_to_end(key)
        return item

    def put(self, key: bytes, payload: bytes, ttl_seconds: float, compute_seconds: float = 0.0) -> bool:
        """Store (or replace) an entry for `ttl_seconds`; False if it was too large or the TTL not positive."""
        size = len(payload) + len(key) + ENTRY_OVERHEAD_BYTES
        if ttl_seconds <= 0 or size > self.max_item_bytes:
            if ttl_seconds > 0:
                self.rejected_too_large += 1
            # A replaced value must not survive as a stale answer.
            self.delete(key)
            return False
        if key in self._items:
            self._remove(key)
        self._items[key] = L1Item(payload, self.clock() + ttl_seconds, compute_seconds, size)
        self._bytes += size
        self._evict()
        return True

    def delete(self, key: bytes) -> bool:
        if key not in self._items:
            return False
        self._remove(key)
        return True

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def _remove(self, key: bytes) -> None:
        self._bytes -= self._items.pop(key).size

    def _evict(self) -> None:
        # Oldest first: an expired head goes without counting as an eviction.
        now = self.clock()
        while self._items:
            key, oldest = next(iter(self._items.items()))
            over = self._bytes > self.max_bytes or (
                self.max_entries is not None and len(self._items) > self.max_entries
            )
            if oldest.expires_at <= now:
                self.expirations += 1
            elif over:
                self.evictions += 1
            else:
                return
            self._remove(key)
