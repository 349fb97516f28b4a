"""Basic-auth guessing: sliding one-minute windows of failures, and the guard built on them."""

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


class GuessGuard:
    """Basic-auth guessing without locking out the real client (docs: fair use, Basic guessing).

    A failed (client id, secret digest) pair is answered from memory for `failure_ttl` seconds
    (Keycloak is not asked again); a pair that minted a token within `known_ttl` (24 h) is never
    throttled; only unknown pairs are throttled, once their client id, or everyone together,
    failed too often within a minute. So a guesser hammering a client id cannot keep its real
    secret from getting a fresh token when the old one expires.
    """

    def __init__(
        self,
        failures_per_minute: int,
        *,
        overall_factor: int = 10,
        failure_ttl: float = 60.0,
        known_ttl: float = 86400.0,
        maxkeys: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failed: TTLCache[str, str] = TTLCache(maxkeys, ttl=failure_ttl, timer=clock)
        self._known: TTLCache[str, bool] = TTLCache(maxkeys, ttl=known_ttl, timer=clock)
        self._per_client = FailureWindow(failures_per_minute, clock=clock)
        self._overall = FailureWindow(failures_per_minute * overall_factor, clock=clock)

    def remembered_failure(self, key: str) -> str | None:
        """Why this pair failed recently, if it did (answer 401 without asking Keycloak)."""
        return self._failed.get(key)

    def retry_after(self, key: str, client_id: str) -> float | None:
        """Seconds an unknown pair must wait before it is tried; None to try it now."""
        if key in self._known:
            return None
        waits = [w for w in (self._per_client.retry_after(client_id), self._overall.retry_after("*")) if w]
        return max(waits) if waits else None

    def failed(self, key: str, client_id: str, reason: str) -> None:
        """Remember a failed pair and count it against its client id and overall."""
        self._known.pop(key, None)
        self._failed[key] = reason
        self._per_client.record(client_id)
        self._overall.record("*")

    def minted(self, key: str) -> None:
        """Remember a pair that minted a token: it is never throttled for `known_ttl`."""
        self._failed.pop(key, None)
        self._known[key] = True
