"""Fair use of a shared upstream: per-subject rate (token bucket) and concurrency limits."""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from proxy import errors


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class FairUse:
    """Token bucket per subject (requests/s with a burst) and a cap on upstream requests in flight."""

    def __init__(self, rate: float, burst: int, concurrency: int, max_subjects: int = 100_000) -> None:
        self._rate = rate
        self._burst = burst
        self._concurrency = concurrency
        # Idle subjects are forgotten; a full bucket is the default anyway (an idle period of `ttl`
        # refills any bucket, as ttl >= burst / rate). Buckets are kept least recently used first
        # (a bucket's stamp is its last use), so the expired ones, and when more than
        # `max_subjects` are active the least recently used, are always at the front: an
        # OrderedDict does in O(1) what a TTLCache did with its timer links on every request.
        self._ttl = max(60.0, burst / rate)
        self._max_subjects = max_subjects
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._in_flight: dict[str, int] = {}

    def _bucket(self, subject: str, now: float) -> _Bucket:
        """The subject's bucket, now the most recently used; a new full one for a new subject."""
        buckets = self._buckets
        bucket = buckets.get(subject)
        if bucket is not None:
            buckets.move_to_end(subject)
            return bucket
        horizon = now - self._ttl
        while buckets:
            oldest = next(iter(buckets.values()))
            if oldest.stamp > horizon and len(buckets) < self._max_subjects:
                break
            buckets.popitem(last=False)
        bucket = buckets[subject] = _Bucket(float(self._burst), now)
        return bucket

    async def admit(self, subject: str) -> None:
        """Take one token from the subject's bucket or refuse with 429 and Retry-After."""
        now = time.monotonic()
        bucket = self._bucket(subject, now)
        bucket.tokens = min(float(self._burst), bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            wait = math.ceil((1.0 - bucket.tokens) / self._rate)
            raise errors.TooManyRequests(
                f"rate limit of {self._rate:g} requests/s exceeded",
                headers={"Retry-After": str(wait)},
            )
        bucket.tokens -= 1.0

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
