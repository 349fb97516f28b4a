"""Fair use of a shared upstream: per-subject rate (token bucket) and concurrency limits."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cachetools import TTLCache

from proxy import errors


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class FairUse:
    """Token bucket per subject (requests/s with a burst) and a cap on upstream requests in flight."""

    def __init__(self, rate: float, burst: int, concurrency: int, max_subjects: int = 100_000) -> None:
        self._rate = rate
        self._burst = burst
        self._concurrency = concurrency
        # Idle subjects are forgotten; a full bucket is the default anyway.
        self._buckets: TTLCache[str, _Bucket] = TTLCache(max_subjects, ttl=max(60.0, burst / rate))
        self._in_flight: dict[str, int] = {}

    async def admit(self, subject: str) -> None:
        """Take one token from the subject's bucket or refuse with 429 and Retry-After."""
        now = time.monotonic()
        bucket = self._buckets.get(subject)
        if bucket is None:
            bucket = _Bucket(float(self._burst), now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            self._buckets[subject] = bucket
            wait = math.ceil((1.0 - bucket.tokens) / self._rate)
            raise errors.TooManyRequests(
                f"rate limit of {self._rate:g} requests/s exceeded",
                headers={"Retry-After": str(wait)},
            )
        bucket.tokens -= 1.0
        self._buckets[subject] = bucket

    @asynccontextmanager
    async def slot(self, subject: str) -> AsyncIterator[None]:
        """Hold one of the subject's upstream slots for the duration of the block, or 429."""
        current = self._in_flight.get(subject, 0)
        if current >= self._concurrency:
            raise errors.TooManyRequests(
                f"more than {self._concurrency} requests in flight", headers={"Retry-After": "1"}
            )
        self._in_flight[subject] = current + 1
        try:
            yield
        finally:
            left = self._in_flight[subject] - 1
            if left:
                self._in_flight[subject] = left
            else:
                del self._in_flight[subject]
