"""A small thread-safe LRU bounded by entry count and total weight (e.g. query bytes).

Only successful, immutable results are stored; callers never cache exceptions.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedLRU(Generic[V]):
    """Least-recently-used map from hashable keys to shared immutable values."""

    def __init__(self, max_entries: int, max_weight: int) -> None:
        if max_entries < 1 or max_weight < 1:
            raise ValueError("cache bounds must be positive")
        self.max_entries = max_entries
        self.max_weight = max_weight
        self._data: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        """The value stored under `key` (now most recently used), or None."""
        with self._lock:
            found = self._data.get(key)
            if found is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return found[0]

    def put(self, key: Hashable, value: V, weight: int = 1) -> None:
        """Store `value`; least recently used entries go until both bounds hold."""
        if weight > self.max_weight:
            return  # larger than the whole budget: never stored
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._data[key] = (value, weight)
            self._weight += weight
            while len(self._data) > self.max_entries or self._weight > self.max_weight:
                _, (_, dropped) = self._data.popitem(last=False)
                self._weight -= dropped

    def clear(self) -> None:
        """Drop every entry and reset the counters."""
        with self._lock:
            self._data.clear()
            self._weight = 0
            self.hits = self.misses = 0

    def __len__(self) -> int:
        """Number of stored entries."""
        return len(self._data)

    @property
    def weight(self) -> int:
        """Total weight of the stored entries."""
        return self._weight
