"""Bounds on the proxy's own load on Keycloak, which is shared infrastructure (single sign-on for
other services too): a global and a per-subject cap on concurrent Keycloak calls, and a cap on
cold (uncached) decisions per subject per minute beyond which decisions come from the caller's
holdings (one call per token, cached) instead of one UMA call each.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from cachetools import TTLCache

WINDOW = 60.0


@dataclass
class _Subject:
    """One subject's semaphore and how many callers hold or wait for it."""

    semaphore: asyncio.Semaphore
    users: int = 0


@dataclass
class LoadStats:
    """What the caps saw (for metrics, tests and the benchmark)."""

    calls: int = 0
    in_flight: int = 0
    peak: int = 0
    peak_per_subject: int = 0
    cold_refused: int = 0
    per_subject_now: dict[str, int] = field(default_factory=dict)


class KeycloakLoad:
    """Concurrency slots for Keycloak calls and a sliding window of cold decisions per subject."""

    def __init__(
        self,
        max_concurrency: int,
        max_per_subject: int,
        cold_per_minute: int,
        *,
        maxkeys: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Caps from settings; 0 for `cold_per_minute` turns the cold-decision cap off."""
        self._global = asyncio.Semaphore(max(1, max_concurrency))
        self._per_subject = max(1, max_per_subject)
        self._cold_limit = cold_per_minute
        self._clock = clock
        self._subjects: dict[str, _Subject] = {}
        self._cold: TTLCache[str, deque[float]] = TTLCache(maxkeys, ttl=WINDOW, timer=clock)
        self.stats = LoadStats()

    @asynccontextmanager
    async def slot(self, subject: str | None = None) -> AsyncIterator[None]:
        """Hold one of the global slots (and one of `subject`'s) for the length of one call."""
        held = self._subjects.get(subject) if subject else None
        if subject and held is None:
            held = self._subjects[subject] = _Subject(asyncio.Semaphore(self._per_subject))
        if held is not None:
            held.users += 1
        try:
            if held is not None:
                await held.semaphore.acquire()
            try:
                async with self._global:
                    self._enter(subject)
                    try:
                        yield
                    finally:
                        self._leave(subject)
            finally:
                if held is not None:
                    held.semaphore.release()
        finally:
            if held is not None and subject is not None:
                held.users -= 1
                if held.users == 0:
                    # Idle subjects are forgotten, so the table stays as small as the traffic.
                    self._subjects.pop(subject, None)

    def take_cold(self, subject: str) -> bool:
        """Count one cold decision for `subject`; False once it had its share this minute."""
        if self._cold_limit <= 0:
            return True
        now = self._clock()
        events = self._cold.get(subject) or deque()
        while events and events[0] <= now - WINDOW:
            events.popleft()
        if len(events) >= self._cold_limit:
            self.stats.cold_refused += 1
            self._cold[subject] = events
            return False
        events.append(now)
        self._cold[subject] = events
        return True

    def _enter(self, subject: str | None) -> None:
        stats = self.stats
        stats.calls += 1
        stats.in_flight += 1
        stats.peak = max(stats.peak, stats.in_flight)
        if subject:
            now = stats.per_subject_now.get(subject, 0) + 1
            stats.per_subject_now[subject] = now
            stats.peak_per_subject = max(stats.peak_per_subject, now)

    def _leave(self, subject: str | None) -> None:
        stats = self.stats
        stats.in_flight -= 1
        if subject:
            left = stats.per_subject_now.get(subject, 1) - 1
            if left:
                stats.per_subject_now[subject] = left
            else:
                stats.per_subject_now.pop(subject, None)
