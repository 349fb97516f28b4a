"""Fair scheduling of upstream work (docs: fair use): per-hub and per-subject caps, per-subject FIFO
queues, freed slots handed round-robin across the subjects that are waiting.

The model is the Mimir/Cortex query-scheduler (per-tenant queues, round-robin between tenants with
queued work) applied per hub, so one hub's slow upstream never takes another hub's slots. A request
takes one admission whatever it does inside; a burst waits instead of being refused, and 429 is
only the answer to a full queue or a wait longer than the queue wait.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import NoReturn

from prometheus_client import Counter, Gauge, Histogram

from proxy import errors
from proxy.metrics import LATENCY_BUCKETS, REGISTRY

QUEUED = Gauge(
    "prom_keycloak_proxy_scheduler_queued_requests",
    "Requests waiting for an upstream slot, by hub.",
    ["hub"],
    registry=REGISTRY,
)
RUNNING = Gauge(
    "prom_keycloak_proxy_scheduler_running_requests",
    "Requests holding an upstream slot, by hub.",
    ["hub"],
    registry=REGISTRY,
)
WAIT_SECONDS = Histogram(
    "prom_keycloak_proxy_scheduler_wait_seconds",
    "Time a request waited for its upstream slot, by hub (0 when admitted at once).",
    ["hub"],
    buckets=(0.0, *LATENCY_BUCKETS[:-3]),
    registry=REGISTRY,
)
REJECTIONS = Counter(
    "prom_keycloak_proxy_scheduler_rejections_total",
    "Requests refused with 429, by hub and reason (queue_full, queue_wait, rate).",
    ["hub", "reason"],
    registry=REGISTRY,
)


class _Expired(Exception):
    """A queued request waited longer than the queue wait."""


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class TokenBucket:
    """Optional per-subject request rate (off unless a rate is configured)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_subjects: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._clock = clock
        # An idle period of `ttl` refills any bucket, so forgetting idle subjects changes nothing.
        self._ttl = max(60.0, self._burst / rate) if rate > 0 else 0.0
        self._max_subjects = max_subjects
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        """Whether a rate is configured."""
        return self._rate > 0

    def retry_after(self, subject: str) -> int | None:
        """Take one token; None when taken, else the seconds until one is available."""
        now = self._clock()
        buckets = self._buckets
        bucket = buckets.get(subject)
        if bucket is None:
            # least recently used first: expired (and surplus) buckets are always at the front
            while buckets:
                oldest = next(iter(buckets.values()))
                if oldest.stamp > now - self._ttl and len(buckets) < self._max_subjects:
                    break
                buckets.popitem(last=False)
            bucket = buckets[subject] = _Bucket(self._burst, now)
        else:
            buckets.move_to_end(subject)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.stamp) * self._rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            return max(1, math.ceil((1.0 - bucket.tokens) / self._rate))
        bucket.tokens -= 1.0
        return None


@dataclass(slots=True)
class _Subject:
    running: int = 0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class _Hub:
    """One hub's slots: its cap, its subjects, and the ring of subjects that may take a slot."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = 0
        self.queued = 0
        self.subjects: dict[str, _Subject] = {}
        # Subjects with waiters and under their own cap, in round-robin order (dict: O(1) ops).
        self.ring: dict[str, None] = {}
        self.queued_gauge = QUEUED.labels(name)
        self.running_gauge = RUNNING.labels(name)
        self.wait_hist = WAIT_SECONDS.labels(name)


class Scheduler:
    """Admission to the upstream, fair across subjects, per hub (see the module docstring)."""

    def __init__(
        self,
        *,
        hub_capacity: int = 64,
        per_subject: int = 8,
        max_queued: int = 256,
        max_wait: float = 20.0,
        rate: float = 0.0,
        burst: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub_capacity = hub_capacity
        self.per_subject = per_subject
        self.max_queued = max_queued
        self.max_wait = max_wait
        self._clock = clock
        self._bucket = TokenBucket(rate, burst, clock=clock)
        self._hubs: dict[str, _Hub] = {}

    def _hub(self, name: str) -> _Hub:
        hub = self._hubs.get(name)
        if hub is None:
            hub = self._hubs[name] = _Hub(name)
        return hub

    def queued(self, hub: str) -> int:
        """Requests waiting for a slot on `hub`."""
        return self._hubs[hub].queued if hub in self._hubs else 0

    def running(self, hub: str) -> int:
        """Requests holding a slot on `hub`."""
        return self._hubs[hub].running if hub in self._hubs else 0

    def subjects(self, hub: str) -> int:
        """Subjects with a request running or queued on `hub` (idle ones are forgotten)."""
        return len(self._hubs[hub].subjects) if hub in self._hubs else 0

    @asynccontextmanager
    async def admission(self, hub: str, subject: str) -> AsyncIterator[float]:
        """Hold one upstream slot of `hub` for the block; yields the seconds waited for it.

        429 with Retry-After when the subject's queue is full, it waited longer than the queue
        wait, or (when configured) its request rate is exceeded. A cancelled waiter (the caller
        disconnected) leaves the queue.
        """
        state = self._hub(hub)
        if self._bucket.enabled:
            wait = self._bucket.retry_after(subject)
            if wait is not None:
                self._reject(state, "rate", f"request rate limit exceeded for {subject}", wait)
        waited = await self._acquire(state, subject)
        try:
            yield waited
        finally:
            self._release(state, subject)

    async def _acquire(self, hub: _Hub, subject: str) -> float:
        """Take a slot now, or queue in the subject's FIFO until one is handed over."""
        sub = hub.subjects.get(subject)
        if sub is None:
            sub = hub.subjects[subject] = _Subject()
        if not sub.waiters and sub.running < self.per_subject and hub.running < self.hub_capacity:
            self._take(hub, sub)
            hub.wait_hist.observe(0.0)
            return 0.0
        if len(sub.waiters) >= self.max_queued:
            self._forget_if_idle(hub, subject, sub)
            self._reject(hub, "queue_full", f"more than {self.max_queued} requests queued", 1)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        sub.waiters.append(waiter)
        hub.queued += 1
        hub.queued_gauge.inc()
        if sub.running < self.per_subject:
            hub.ring.setdefault(subject, None)
        started = self._clock()
        timer = loop.call_later(self.max_wait, self._expire, waiter)
        try:
            await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(hub, subject)  # granted, but the caller left before taking it
            else:
                self._unqueue(hub, subject, sub, waiter)
            if isinstance(exc, _Expired):
                retry = max(1, math.ceil(self.max_wait / 4))
                self._reject(hub, "queue_wait", f"waited over {self.max_wait:g}s for an upstream slot", retry)
            raise
        finally:
            timer.cancel()
        waited = self._clock() - started
        hub.wait_hist.observe(waited)
        return waited

    @staticmethod
    def _expire(waiter: asyncio.Future[None]) -> None:
        if not waiter.done():
            waiter.set_exception(_Expired())

    def _take(self, hub: _Hub, sub: _Subject) -> None:
        sub.running += 1
        hub.running += 1
        hub.running_gauge.inc()

    def _unqueue(self, hub: _Hub, subject: str, sub: _Subject, waiter: asyncio.Future[None]) -> None:
        """Drop a waiter that will never run (cancelled or expired), unless dispatch already did."""
        try:
            sub.waiters.remove(waiter)
        except ValueError:
            pass
        else:
            hub.queued -= 1
            hub.queued_gauge.dec()
        if not sub.waiters:
            hub.ring.pop(subject, None)
        self._forget_if_idle(hub, subject, sub)

    def _release(self, hub: _Hub, subject: str) -> None:
        """Give a slot back and hand freed slots to the waiting subjects in round-robin order."""
        sub = hub.subjects[subject]
        sub.running -= 1
        hub.running -= 1
        hub.running_gauge.dec()
        if sub.waiters and sub.running < self.per_subject:
            hub.ring.setdefault(subject, None)
        self._forget_if_idle(hub, subject, sub)
        self._dispatch(hub)

    def _dispatch(self, hub: _Hub) -> None:
        ring = hub.ring
        while ring and hub.running < self.hub_capacity:
            subject = next(iter(ring))
            del ring[subject]
            sub = hub.subjects[subject]
            waiter = sub.waiters.popleft()
            hub.queued -= 1
            hub.queued_gauge.dec()
            # A waiter cancelled or expired in this loop turn has not left the queue yet: skip it
            # (its task unqueues nothing more and forgets the subject if idle).
            if not waiter.done():
                self._take(hub, sub)
                waiter.set_result(None)
            # back of the ring: every other waiting subject gets its turn first
            if sub.waiters and sub.running < self.per_subject:
                ring[subject] = None

    @staticmethod
    def _forget_if_idle(hub: _Hub, subject: str, sub: _Subject) -> None:
        if not sub.running and not sub.waiters:
            hub.subjects.pop(subject, None)

    @staticmethod
    def _reject(hub: _Hub, reason: str, message: str, retry_after: int) -> NoReturn:
        REJECTIONS.labels(hub.name, reason).inc()
        raise errors.TooManyRequests(message, headers={"Retry-After": str(retry_after)})
