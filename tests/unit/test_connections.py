"""The guarded listener against the installed aiohttp: head timeout, TLS handshake timeout,
keep-alive idle timeout, connection cap, handler cancellation (docs: fair use, connections)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme
from aiohttp import web

from proxy.connections import GuardedSite

HEAD = b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"


async def _ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


class _Served:
    """A guarded site on loopback serving /ok (and /slow, which records cancellation)."""

    def __init__(self, runner: web.AppRunner, site: GuardedSite, cancelled: list[bool]) -> None:
        self.runner, self.site, self.cancelled = runner, site, cancelled


async def _serve(
    header_timeout: float = 0.5,
    max_connections: int = 50,
    keepalive: float = 75.0,
    tls: ssl.SSLContext | None = None,
) -> _Served:
    cancelled: list[bool] = []

    async def slow(request: web.Request) -> web.Response:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return web.Response(text="late")

    app = web.Application()
    app.router.add_get("/ok", _ok)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app, keepalive_timeout=keepalive, handler_cancellation=True)
    await runner.setup()
    site = GuardedSite(
        runner,
        "127.0.0.1",
        0,
        ssl_context=tls,
        header_timeout=header_timeout,
        max_connections=max_connections,
    )
    await site.start()
    return _Served(runner, site, cancelled)


@pytest.fixture
async def served() -> AsyncIterator[_Served]:
    """A guarded site with a 0.5 s header timeout and at most 50 connections."""
    s = await _serve()
    yield s
    await s.runner.cleanup()


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (EOF or reset)."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    data = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
    writer.close()
    return data


async def test_idle_and_half_sent_connections_are_closed_at_the_header_timeout(served: _Served) -> None:
    """Silent connections and connections stuck mid-head are closed after the header timeout."""
    started = time.monotonic()
    conns = [await asyncio.open_connection("127.0.0.1", served.site.port) for _ in range(20)]
    for i, (_, writer) in enumerate(conns):
        if i % 2:
            writer.write(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: a")
    closed = await asyncio.gather(*(_closed_within(r, 3) for r, _ in conns))
    assert all(closed)
    assert 0.4 < time.monotonic() - started < 2.5
    for _, writer in conns:
        writer.close()
    await asyncio.sleep(0.05)
    assert served.site.open_connections == 0


async def test_a_complete_head_is_served_and_kept_alive_past_the_header_timeout(served: _Served) -> None:
    """A request whose head arrived in pieces is answered; the connection then stays open."""
    reader, writer = await asyncio.open_connection("127.0.0.1", served.site.port)
    for piece in (HEAD[:10], HEAD[10:27], HEAD[27:]):
        writer.write(piece)
        await asyncio.sleep(0.1)
    assert b"200 OK" in await asyncio.wait_for(reader.readuntil(b"ok"), 5)
    assert not await _closed_within(reader, 1.0)
    writer.write(HEAD)
    assert b"200 OK" in await asyncio.wait_for(reader.readuntil(b"ok"), 5)
    writer.close()


async def test_idle_keepalive_connection_is_closed_after_the_keepalive_timeout() -> None:
    """After a response, an idle connection is closed after the keep-alive timeout."""
    s = await _serve(header_timeout=5, keepalive=0.5)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.site.port)
        writer.write(HEAD)
        await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        assert await _closed_within(reader, 2.5)
        writer.close()
    finally:
        await s.runner.cleanup()


async def test_connection_cap_stops_accepting_until_one_closes() -> None:
    """At the cap, new connections wait in the backlog while open ones keep being served."""
    s = await _serve(header_timeout=30, max_connections=3)
    try:
        held = [await asyncio.open_connection("127.0.0.1", s.site.port) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert s.site.open_connections == 3
        # an open connection is still served at the cap
        held[0][1].write(HEAD)
        assert b"200 OK" in await asyncio.wait_for(held[0][0].readuntil(b"ok"), 5)
        # a fourth connects (kernel backlog) but is not served while the cap holds
        waiting = asyncio.create_task(_exchange(s.site.port, HEAD))
        await asyncio.sleep(0.3)
        assert not waiting.done() and s.site.open_connections == 3
        held[1][1].close()
        assert b"200 OK" in await asyncio.wait_for(waiting, 5)
        for _, writer in held:
            writer.close()
    finally:
        await s.runner.cleanup()


async def test_tls_handshake_not_started_is_dropped_at_the_header_timeout() -> None:
    """With TLS, a client that never starts the handshake is dropped within the header timeout."""
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    s = await _serve(header_timeout=0.5, tls=ctx)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.site.port)
        assert await _closed_within(reader, 3)
        writer.close()
        client = ssl.create_default_context()
        ca.configure_trust(client)
        url = f"https://127.0.0.1:{s.site.port}/ok"
        async with aiohttp.ClientSession() as session, session.get(url, ssl=client) as resp:
            assert await resp.text() == "ok"
        await asyncio.sleep(0.05)
        assert s.site.open_connections <= 1
    finally:
        await s.runner.cleanup()


async def test_disconnecting_caller_cancels_its_handler(served: _Served) -> None:
    """Handler cancellation is on: a caller who hangs up cancels the request's handler."""
    _, writer = await asyncio.open_connection("127.0.0.1", served.site.port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.sleep(0.2)
    writer.close()
    for _ in range(40):
        if served.cancelled:
            break
        await asyncio.sleep(0.05)
    assert served.cancelled == [True]


def test_the_same_holds_on_uvloop() -> None:
    """Head timeout, cap and cancellation behave the same on uvloop (what `serve` runs on)."""
    uvloop = pytest.importorskip("uvloop")

    async def scenarios() -> None:
        s = await _serve()
        try:
            await test_idle_and_half_sent_connections_are_closed_at_the_header_timeout(s)
            await test_disconnecting_caller_cancels_its_handler(s)
        finally:
            await s.runner.cleanup()
        await test_connection_cap_stops_accepting_until_one_closes()
        await test_tls_handshake_not_started_is_dropped_at_the_header_timeout()

    uvloop.run(scenarios())


def test_aiohttp_is_the_version_the_guarded_site_was_built_for() -> None:
    """Tripwire for upgrades: GuardedSite relies on BaseSite's `_runner`/`_ssl_context`/`_backlog`
    and on the runner's server being a protocol factory; re-check both (and this suite) before
    moving past the locked aiohttp 3.14."""
    assert aiohttp.__version__.startswith("3.14."), aiohttp.__version__
    runner = web.AppRunner(web.Application())
    asyncio.run(runner.setup())
    try:
        site = GuardedSite(runner, "127.0.0.1", 0, backlog=7)
        assert (site._runner, site._ssl_context, site._backlog) == (runner, None, 7)
        assert isinstance(runner.server() if runner.server else None, asyncio.Protocol)
    finally:
        asyncio.run(runner.cleanup())
