"""Sliding one-minute windows of failures, per key and overall, for Basic-auth guessing."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from cachetools import TTLCache

WINDOW = 60.0


class FailureWindow:
    """Count failures per key over a sliding window; refuse once a key reaches its limit."""

    def __init__(
        self,
        limit: int,
        *,
        window: float = WINDOW,
        maxkeys: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """At most `limit` failures per key within `window` seconds; keys bounded in number."""
        self._limit = limit
        self._window = window
        self._clock = clock
        self._events: TTLCache[str, deque[float]] = TTLCache(maxkeys, ttl=window, timer=clock)

    def retry_after(self, key: str) -> float | None:
        """Seconds until `key` may try again, or None if it may try now."""
        now = self._clock()
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) < self._limit:
            return None
        return events[0] + self._window - now

    def record(self, key: str) -> None:
        """Count one failure of `key`."""
        events = self._events.get(key) or deque(maxlen=self._limit)
        events.append(self._clock())
        # Re-inserted so the entry lives a full window past its latest failure.
        self._events[key] = events
