"""Coalescing of whole upstream answers (docs/caching.md#coalescing): one fetch per key in flight,
shared with followers who take no admission, bounded, errors and cancellation shared correctly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from multidict import CIMultiDict

from proxy import context, errors, metrics
from proxy.coalesce import Answer, Coalescer, Whole
from proxy.context import RequestContext


class Fetcher:
    """A fetch that counts its calls and answers after `gate` opens."""

    def __init__(self, body: bytes = b'{"status":"success"}', fail: Exception | None = None) -> None:
        self.body, self.fail = body, fail
        self.calls = 0
        self.cancelled = 0
        self.gate = asyncio.Event()

    async def __call__(self) -> Whole:
        """One upstream call."""
        self.calls += 1
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.fail is not None:
            raise self.fail
        return Whole(200, CIMultiDict({"Content-Type": "application/json"}), self.body)


class Slots:
    """An admission that counts the slots taken."""

    def __init__(self) -> None:
        self.taken = 0

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[None]:
        self.taken += 1
        yield


async def _settle() -> None:
    """Let every started task run up to its next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_identical_concurrent_calls_fetch_once_and_share_the_answer() -> None:
    """Ten callers of one key: one fetch, every caller gets the same answer."""
    coalescer, fetch = Coalescer(True, 1 << 20), Fetcher()
    calls = [asyncio.create_task(coalescer.whole(b"k", fetch)) for _ in range(10)]
    await _settle()
    fetch.gate.set()
    answers = await asyncio.gather(*calls)
    assert fetch.calls == 1
    assert {a.body for a in answers} == {fetch.body}
    assert coalescer.in_flight() == 0


async def test_different_keys_fetch_separately() -> None:
    """Callers of different keys never share a fetch."""
    coalescer = Coalescer(True, 1 << 20)
    fetches = [Fetcher(body=str(i).encode()) for i in range(3)]
    calls = [asyncio.create_task(coalescer.whole(str(i).encode(), f)) for i, f in enumerate(fetches)]
    await _settle()
    for f in fetches:
        f.gate.set()
    answers = await asyncio.gather(*calls)
    assert [f.calls for f in fetches] == [1, 1, 1]
    assert [a.body for a in answers] == [b"0", b"1", b"2"]


async def test_disabled_coalescer_fetches_for_every_caller() -> None:
    """PROXY_COALESCE=false: each caller fetches, each under its own admission."""
    coalescer, fetch, slots = Coalescer(False, 1 << 20), Fetcher(), Slots()
    calls = [asyncio.create_task(coalescer.whole(b"k", fetch, slots)) for _ in range(4)]
    await _settle()
    fetch.gate.set()
    await asyncio.gather(*calls)
    assert fetch.calls == 4 and slots.taken == 4


async def test_followers_take_no_admission() -> None:
    """Only the leader takes a slot; the followers of its fetch take none."""
    coalescer, fetch, slots = Coalescer(True, 1 << 20), Fetcher(), Slots()
    calls = [asyncio.create_task(coalescer.whole(b"k", fetch, slots)) for _ in range(8)]
    await _settle()
    fetch.gate.set()
    await asyncio.gather(*calls)
    assert fetch.calls == 1 and slots.taken == 1


async def test_a_caller_admitted_after_a_flight_started_follows_it() -> None:
    """A caller whose admission was granted while another's fetch of the key began follows it."""
    coalescer, fetch = Coalescer(True, 1 << 20), Fetcher()
    granted = asyncio.Event()

    @asynccontextmanager
    async def slow_slot() -> AsyncIterator[None]:
        await granted.wait()
        yield

    queued = asyncio.create_task(coalescer.whole(b"k", fetch, slow_slot))
    await _settle()
    leader = asyncio.create_task(coalescer.whole(b"k", fetch))
    await _settle()
    granted.set()
    await _settle()
    fetch.gate.set()
    await asyncio.gather(queued, leader)
    assert fetch.calls == 1


async def test_followers_over_the_bound_fetch_their_own() -> None:
    """An answer larger than the bound is not shared: each follower runs its own fetch."""
    coalescer, fetch, slots = Coalescer(True, 4), Fetcher(body=b"0123456789"), Slots()
    calls = [asyncio.create_task(coalescer.whole(b"k", fetch, slots)) for _ in range(3)]
    await _settle()
    fetch.gate.set()
    answers = await asyncio.gather(*calls)
    assert fetch.calls == 3 and slots.taken == 3
    assert {a.body for a in answers} == {b"0123456789"}


async def test_the_leader_leaving_does_not_cancel_the_fetch_while_followers_wait() -> None:
    """The leader's caller goes away: the fetch goes on and the follower gets its answer."""
    coalescer, fetch = Coalescer(True, 1 << 20), Fetcher()
    leader = asyncio.create_task(coalescer.whole(b"k", fetch))
    await _settle()
    follower = asyncio.create_task(coalescer.whole(b"k", fetch))
    await _settle()
    leader.cancel()
    await _settle()
    assert fetch.cancelled == 0
    fetch.gate.set()
    assert (await follower).body == fetch.body
    assert fetch.calls == 1
    with pytest.raises(asyncio.CancelledError):
        await leader


async def test_the_fetch_is_cancelled_when_every_waiter_is_gone() -> None:
    """Leader and followers all leave: the shared fetch is cancelled and forgotten."""
    coalescer, fetch = Coalescer(True, 1 << 20), Fetcher()
    calls = [asyncio.create_task(coalescer.whole(b"k", fetch)) for _ in range(3)]
    await _settle()
    for call in calls:
        call.cancel()
    await _settle()
    assert fetch.cancelled == 1
    assert coalescer.in_flight() == 0
    again = asyncio.create_task(coalescer.whole(b"k", fetch))
    await _settle()
    fetch.gate.set()
    assert (await again).body == fetch.body and fetch.calls == 2


async def test_an_error_reaches_every_waiter() -> None:
    """The shared fetch's error is raised to the leader and to every follower."""
    coalescer = Coalescer(True, 1 << 20)
    fetch = Fetcher(fail=errors.UpstreamTimeout("upstream did not answer in time"))
    calls = [asyncio.create_task(coalescer.whole(b"k", fetch)) for _ in range(4)]
    await _settle()
    fetch.gate.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert fetch.calls == 1
    assert all(isinstance(o, errors.UpstreamTimeout) for o in outcomes)


async def test_a_finished_fetch_is_not_reused() -> None:
    """Coalescing is not caching: a call after the flight landed fetches again."""
    coalescer, fetch = Coalescer(True, 1 << 20), Fetcher()
    fetch.gate.set()
    await coalescer.whole(b"k", fetch)
    await coalescer.whole(b"k", fetch)
    assert fetch.calls == 2


async def test_a_follower_is_counted_and_noted_as_coalesced() -> None:
    """A follower's request context says `coalesced` and the hub's counter goes up; the
    leader's says nothing."""
    coalescer, fetch = Coalescer(True, 1 << 20, hub="unit-coalesce"), Fetcher()
    contexts = [RequestContext(str(i), "GET", "rules", "unit-coalesce") for i in range(2)]
    before = (
        metrics.REGISTRY.get_sample_value(
            "prom_keycloak_proxy_coalesced_requests_total", {"hub": "unit-coalesce"}
        )
        or 0.0
    )

    async def call(ctx: RequestContext) -> Whole:
        context.enter(ctx)
        return await coalescer.whole(b"k", fetch)

    leader = asyncio.create_task(call(contexts[0]))
    await _settle()
    follower = asyncio.create_task(call(contexts[1]))
    await _settle()
    fetch.gate.set()
    await asyncio.gather(leader, follower)
    after = metrics.REGISTRY.get_sample_value(
        "prom_keycloak_proxy_coalesced_requests_total", {"hub": "unit-coalesce"}
    )
    assert after == before + 1
    assert [c.result_cache for c in contexts] == [None, "coalesced"]
    assert contexts[1].log_fields()["result_cache"] == "coalesced"


# ------------------------------------------------------------------ streamed answers


class Origin:
    """A real HTTP server on loopback (same event loop): counts requests, answers `body` in
    `chunk`-byte writes once `gate` opens, notes requests whose client went away."""

    def __init__(self, body: bytes, chunk: int = 1024, status: int = 200) -> None:
        self.body, self.chunk, self.status = body, chunk, status
        self.seen = 0
        self.cancelled = 0
        self.gate = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Record, wait for the gate, stream the body."""
        self.seen += 1
        try:
            await self.gate.wait()
            out = web.StreamResponse(status=self.status, headers={"Content-Type": "application/json"})
            await out.prepare(request)
            for at in range(0, len(self.body), self.chunk):
                await out.write(self.body[at : at + self.chunk])
                await asyncio.sleep(0)
            await out.write_eof()
            return out
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def __aenter__(self) -> Origin:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/api/v1/query"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def _read_all(answer: Answer) -> tuple[int, bytes]:
    """A caller's respond(): the whole answer it was served."""
    try:
        return answer.status, b"".join([chunk async for chunk in answer.chunks()])
    finally:
        answer.release()


def _streams(
    coalescer: Coalescer, session: aiohttp.ClientSession, url: str, slots: Slots, n: int
) -> list[asyncio.Task[tuple[int, bytes]]]:
    """`n` concurrent streamed calls of one key."""
    return [
        asyncio.create_task(coalescer.stream(b"k", lambda: session.get(url), _read_all, slots))
        for _ in range(n)
    ]


async def test_streamed_identical_calls_send_one_upstream_request() -> None:
    """Ten streamed callers of one key: the upstream answers once, everyone gets the whole body,
    and only the leader took a slot."""
    body = b'{"status":"success","data":' + b"1" * 50_000 + b"}"
    async with Origin(body) as origin, aiohttp.ClientSession() as session:
        coalescer, slots = Coalescer(True, 1 << 20), Slots()
        calls = _streams(coalescer, session, origin.url, slots, 10)
        await asyncio.sleep(0.2)
        origin.gate.set()
        answers = await asyncio.gather(*calls)
    assert origin.seen == 1 and slots.taken == 1
    assert answers == [(200, body)] * 10


async def test_streamed_overflow_makes_followers_send_their_own_requests() -> None:
    """An answer over the bound: the leader streams it, each follower sends its own request
    under its own slot, and all callers get the identical full answer."""
    body = bytes(range(256)) * 400  # 100 KiB
    async with Origin(body) as origin, aiohttp.ClientSession() as session:
        coalescer, slots = Coalescer(True, 8 * 1024), Slots()
        calls = _streams(coalescer, session, origin.url, slots, 4)
        await asyncio.sleep(0.2)
        origin.gate.set()
        answers = await asyncio.gather(*calls)
    assert origin.seen == 4 and slots.taken == 4
    assert answers == [(200, body)] * 4


async def test_streamed_leader_leaving_leaves_the_followers_their_answer() -> None:
    """The leader's caller is cancelled mid-flight: the upstream request goes on, the follower
    gets the whole answer, and the upstream was asked once."""
    body = b'{"status":"success"}'
    async with Origin(body) as origin, aiohttp.ClientSession() as session:
        coalescer, slots = Coalescer(True, 1 << 20), Slots()
        leader = _streams(coalescer, session, origin.url, slots, 1)[0]
        await asyncio.sleep(0.1)
        follower = _streams(coalescer, session, origin.url, slots, 1)[0]
        await asyncio.sleep(0.1)
        leader.cancel()
        await asyncio.sleep(0.1)
        origin.gate.set()
        assert await follower == (200, body)
    assert origin.seen == 1 and origin.cancelled == 0


async def test_streamed_call_is_cancelled_upstream_when_nobody_waits() -> None:
    """Leader and follower both leave: the upstream sees its request cancelled."""
    async with Origin(b"{}") as origin, aiohttp.ClientSession() as session:
        coalescer, slots = Coalescer(True, 1 << 20), Slots()
        calls = _streams(coalescer, session, origin.url, slots, 2)
        await asyncio.sleep(0.2)
        for call in calls:
            call.cancel()
        for _ in range(50):
            if origin.cancelled:
                break
            await asyncio.sleep(0.02)
        assert origin.seen == 1 and origin.cancelled == 1
        assert coalescer.in_flight() == 0


async def test_streamed_upstream_failure_reaches_every_waiter() -> None:
    """An upstream that cannot be reached: the leader and every follower get the 502 error."""
    coalescer, slots = Coalescer(True, 1 << 20), Slots()
    started = asyncio.Event()

    async def refused() -> aiohttp.ClientResponse:
        await started.wait()
        raise errors.UpstreamUnavailable("upstream is unreachable")

    calls = [asyncio.create_task(coalescer.stream(b"k", refused, _read_all, slots)) for _ in range(3)]
    await _settle()
    started.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(o, errors.UpstreamUnavailable) for o in outcomes), outcomes
    assert slots.taken == 1


async def test_streamed_upstream_error_status_is_shared() -> None:
    """A 503 answer from the upstream is passed to every caller of the flight as it is."""
    async with Origin(b'{"status":"error"}', status=503) as origin, aiohttp.ClientSession() as session:
        coalescer, slots = Coalescer(True, 1 << 20), Slots()
        calls = _streams(coalescer, session, origin.url, slots, 3)
        await asyncio.sleep(0.2)
        origin.gate.set()
        answers = await asyncio.gather(*calls)
    assert origin.seen == 1
    assert answers == [(503, b'{"status":"error"}')] * 3


async def test_streamed_overflow_paces_the_upstream_read_by_the_leader() -> None:
    """Past the bound the flight holds no more than the bound (plus one chunk) unread by a slow
    leader: the upstream read waits for the leader instead of buffering the whole answer."""
    body = bytes(range(256)) * 4096  # 1 MiB
    held: list[int] = []

    async def slow_reader(answer: Answer) -> tuple[int, bytes]:
        got = bytearray()
        async for chunk in answer.chunks():
            got += chunk
            held.append(answer._flight.size if answer._flight is not None else 0)
            await asyncio.sleep(0.001)
        return answer.status, bytes(got)

    async with Origin(body, chunk=16 * 1024) as origin, aiohttp.ClientSession() as session:
        coalescer = Coalescer(True, 64 * 1024)
        origin.gate.set()
        reply = await coalescer.stream(b"k", lambda: session.get(origin.url), slow_reader)
    assert reply == (200, body)
    assert max(held) <= 64 * 1024 + 64 * 1024, max(held)
