"""Coalescing: identical upstream requests in flight at the same time are sent once
(docs/caching.md#coalescing).

The first caller of a key (the leader) takes its request's admission and starts the upstream call
as a task of its own; callers of the same key arriving while it runs (followers) take no admission
(docs: fair use) and are served the leader's answer, each as its own request (its own warnings,
its own audit event). The task outlives the leader's caller while followers wait and is cancelled
as soon as nobody waits any more. The bytes shared are bounded: a follower whose answer would be
over the bound sends its own request, under its own admission.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict

from proxy import context, errors, metrics
from proxy.bodies import CHUNK, response_headers

Admission = Callable[[], AbstractAsyncContextManager[None]]


def no_admission() -> AbstractAsyncContextManager[None]:
    """An admission that holds nothing (the caller already holds one, or none is needed)."""
    return nullcontext()


@dataclass(frozen=True, slots=True)
class Whole:
    """A whole upstream answer: its status, the passed response headers, the body as sent."""

    status: int
    headers: CIMultiDict[str]
    body: bytes


class _Flight:
    """One upstream call in flight and how many callers wait for it."""

    def __init__(self, table: dict[bytes, Any], key: bytes) -> None:
        self.table, self.key = table, key
        self.waiters = 1
        self.task: asyncio.Future[Any] | None = None

    def forget(self) -> None:
        """No caller may join this flight any more."""
        if self.table.get(self.key) is self:
            del self.table[self.key]

    def leave(self) -> None:
        """One waiter is gone; the last one cancels the call (and its upstream request)."""
        self.waiters -= 1
        if self.waiters <= 0 and self.task is not None and not self.task.done():
            self.forget()
            self.task.cancel()


class Coalescer:
    """Identical upstream requests in flight share one call: whole answers and streamed ones."""

    def __init__(self, enabled: bool, max_bytes: int, hub: str = "") -> None:
        """`enabled` (PROXY_COALESCE); followers share answers of at most `max_bytes`."""
        self.enabled = enabled
        self.max_bytes = max_bytes
        self.hub = hub
        self._wholes: dict[bytes, _Flight] = {}
        self._streams: dict[bytes, _Stream] = {}

    def in_flight(self) -> int:
        """Coalescable calls in flight now."""
        return len(self._wholes) + len(self._streams)

    def _followed(self) -> None:
        """A caller was served a shared answer: counted, and its outcome noted."""
        ctx = context.current()
        metrics.COALESCED.labels(self.hub or (ctx.hub if ctx is not None else "")).inc()
        if ctx is not None:
            ctx.result_cache = "coalesced"

    # ------------------------------------------------------------------ whole answers

    async def whole(
        self, key: bytes, fetch: Callable[[], Awaitable[Whole]], admission: Admission = no_admission
    ) -> Whole:
        """`fetch()`'s answer, shared with every caller of `key` while it is in flight; the
        leader fetches under `admission()`, a follower takes none unless it fetches itself (its
        shared answer over the bound). Errors reach every waiter."""
        if self.enabled:
            flight = self._wholes.get(key)
            if flight is None:
                async with admission():
                    flight = self._wholes.get(key)
                    if flight is None:
                        return await self._lead_whole(key, fetch)
            shared = await self._follow_whole(flight)
            if shared is not None:
                return shared
        async with admission():
            return await fetch()

    async def _lead_whole(self, key: bytes, fetch: Callable[[], Awaitable[Whole]]) -> Whole:
        flight = self._wholes[key] = _Flight(self._wholes, key)
        task = flight.task = asyncio.ensure_future(fetch())
        task.add_done_callback(lambda done: _landed(flight, done))
        try:
            return await asyncio.shield(task)
        finally:
            flight.leave()

    async def _follow_whole(self, flight: _Flight) -> Whole | None:
        assert flight.task is not None
        flight.waiters += 1
        try:
            shared: Whole = await asyncio.shield(flight.task)
        finally:
            flight.leave()
        if len(shared.body) > self.max_bytes:
            return None
        self._followed()
        return shared

    # ------------------------------------------------------------------ streamed answers

    async def stream(
        self,
        key: bytes,
        send: Callable[[], Awaitable[aiohttp.ClientResponse]],
        respond: Callable[[Answer], Awaitable[Any]],
        admission: Admission = no_admission,
    ) -> Any:
        """`respond(answer)` for the upstream's answer to `send()`: the leader streams it as it
        arrives (read by a task of its own into a buffer of at most `max_bytes`), followers are
        served the buffered answer, or send their own request when it overflowed."""
        if self.enabled:
            flight = self._streams.get(key)
            if flight is None:
                async with admission():
                    flight = self._streams.get(key)
                    if flight is None:
                        return await self._lead_stream(key, send, respond)
            if await self._follow_stream(flight):
                self._followed()
                return await respond(Answer(flight))
        async with admission():
            return await respond(Answer.direct(await send()))

    async def _lead_stream(
        self,
        key: bytes,
        send: Callable[[], Awaitable[aiohttp.ClientResponse]],
        respond: Callable[[Answer], Awaitable[Any]],
    ) -> Any:
        flight = self._streams[key] = _Stream(self._streams, key, self.max_bytes)
        task = flight.task = asyncio.ensure_future(flight.read(send))
        task.add_done_callback(lambda done: _landed(flight, done))
        try:
            await flight.wait(lambda: flight.head is not None or flight.finished)
            if flight.head is None:
                raise flight.failure()
            return await respond(Answer(flight))
        finally:
            flight.leave()

    async def _follow_stream(self, flight: _Stream) -> bool:
        """Wait for the shared answer; False when it overflowed (send your own request)."""
        flight.waiters += 1
        try:
            await flight.wait(lambda: flight.finished or flight.overflowed)
        finally:
            flight.leave()
        if flight.overflowed:
            return False
        if flight.error is not None:
            raise flight.failure()
        return True


def _landed(flight: _Flight, task: asyncio.Future[Any]) -> None:
    """A finished call: nobody joins it any more; its error counts as seen even if nobody waited."""
    flight.forget()
    if not task.cancelled():
        task.exception()


@dataclass(frozen=True, slots=True)
class Head:
    """An upstream answer's status, passed response headers and announced length."""

    status: int
    headers: CIMultiDict[str]
    content_length: int | None


class _Stream(_Flight):
    """A streamed call: the answer's head and chunks, kept until `max_bytes` is exceeded (the
    overflow); from then on only what the leader has not read yet, the read paced by the leader."""

    def __init__(self, table: dict[bytes, Any], key: bytes, max_bytes: int) -> None:
        super().__init__(table, key)
        self.max_bytes = max_bytes
        self.head: Head | None = None
        self.chunks: list[bytes] = []
        self.first = 0  # the index of chunks[0] among all the answer's chunks
        self.size = 0  # bytes in `chunks`
        self.overflowed = False
        self.finished = False
        self.error: BaseException | None = None
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """Wake everybody waiting on this flight."""
        self._changed.set()
        self._changed.clear()

    async def wait(self, ready: Callable[[], bool]) -> None:
        """Until `ready()`."""
        while not ready():
            await self._changed.wait()

    async def beyond(self, count: int) -> None:
        """Until more than `count` chunks arrived, or the answer finished."""
        while not self.finished and self.first + len(self.chunks) <= count:
            await self._changed.wait()

    async def read(self, send: Callable[[], Awaitable[aiohttp.ClientResponse]]) -> None:
        """The flight's task: send, then read the answer into the buffer."""
        response: aiohttp.ClientResponse | None = None
        complete = False
        try:
            response = await send()
            self.head = Head(response.status, response_headers(response), response.content_length)
            self.changed()
            async for chunk in response.content.iter_chunked(CHUNK):
                self.chunks.append(chunk)
                self.size += len(chunk)
                if not self.overflowed and self.size > self.max_bytes:
                    self.overflowed = True
                    self.forget()  # too large to share: later callers lead their own
                self.changed()
                # Past the bound the leader's pace sets the reading (the upstream waits).
                await self.wait(lambda: not self.overflowed or self.size <= self.max_bytes)
            complete = True
        except Exception as exc:  # an error reaches every waiter (answered by each)
            self.error = exc
        finally:
            if not complete and self.error is None:  # cancelled: never a silently short answer
                self.error = aiohttp.ClientPayloadError("the shared upstream read was cancelled")
            self.finished = True
            self.forget()
            self.changed()
            if response is not None:
                if not complete:
                    response.close()  # cancelled or broken: the upstream request is abandoned
                response.release()

    def consumed(self, upto: int) -> None:
        """The leader has read every chunk before index `upto`: past the overflow, drop them."""
        if self.overflowed and upto > self.first:
            dropped = self.chunks[: upto - self.first]
            del self.chunks[: upto - self.first]
            self.first = upto
            self.size -= sum(len(c) for c in dropped)
            self.changed()

    def failure(self) -> errors.ProxyError:
        """The flight's error, answerable to a caller that has not sent anything yet."""
        exc = self.error
        if isinstance(exc, errors.ProxyError):
            return exc
        if isinstance(exc, TimeoutError):
            return errors.UpstreamTimeout("upstream did not answer in time")
        return errors.UpstreamUnavailable("upstream connection failed")


class Answer:
    """One caller's view of an upstream answer: a shared flight's (read from its buffer) or its
    own response's."""

    def __init__(self, flight: _Stream | None, response: aiohttp.ClientResponse | None = None) -> None:
        self._flight, self._response = flight, response
        if response is not None:
            self.head = Head(response.status, response_headers(response), response.content_length)
        else:
            assert flight is not None and flight.head is not None
            self.head = flight.head

    @classmethod
    def direct(cls, response: aiohttp.ClientResponse) -> Answer:
        """The caller's own upstream response."""
        return cls(None, response)

    @property
    def status(self) -> int:
        """The upstream's status."""
        return self.head.status

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; TimeoutError / aiohttp.ClientError when the upstream broke off."""
        if self._response is not None:
            async for chunk in self._response.content.iter_chunked(CHUNK):
                yield chunk
            return
        flight = self._flight
        assert flight is not None
        at = flight.first
        while True:
            if at < flight.first:
                raise aiohttp.ClientPayloadError("shared answer no longer buffered")
            if at < flight.first + len(flight.chunks):
                chunk = flight.chunks[at - flight.first]
                at += 1
                flight.consumed(at)
                yield chunk
            elif flight.finished:
                if flight.error is not None:
                    raise flight.error
                return
            else:
                await flight.beyond(at)

    def release(self) -> None:
        """Give the caller's own response back (a shared one belongs to its flight's task)."""
        if self._response is not None:
            self._response.release()
