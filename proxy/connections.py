"""Connection hygiene for the proxy's listener (docs: fair use, connections).

aiohttp has neither a request-head timeout nor a cap on open connections, and no public hook for
either. This site accepts connections itself: it stops calling accept() while `max_connections`
are open (the kernel backlog holds the rest; open connections are unaffected), gives TLS handshakes
at most the header timeout, and wraps aiohttp's protocol so that a connection whose first request
head is not complete within the header timeout is closed. Later requests on a kept-alive connection
are covered by aiohttp's keep-alive timeout, which also closes a connection idle mid-head.

Pinned to aiohttp's protocol contract (one `asyncio.Protocol` per connection from the runner's
server factory); tests/unit/test_connections.py runs it against the installed aiohttp.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
from contextlib import suppress
from typing import Any, cast

import structlog
from aiohttp import web
from prometheus_client import Counter, Gauge

from proxy.metrics import REGISTRY

log = structlog.get_logger(__name__)

OPEN = Gauge(
    "prom_keycloak_proxy_open_connections",
    "Connections open on the proxy's listener.",
    registry=REGISTRY,
)
CLOSED_EARLY = Counter(
    "prom_keycloak_proxy_connections_timed_out_total",
    "Connections closed for not completing a request head (or TLS handshake) in time.",
    ["phase"],
    registry=REGISTRY,
)
# End of a request head: an empty line (bare LF line ends are accepted too).
_HEAD_END = re.compile(rb"\n\r?\n")


class _HeadDeadline(asyncio.Protocol):
    """aiohttp's protocol for one connection, closed if its first request head is late."""

    def __init__(self, inner: asyncio.Protocol, site: GuardedSite, deadline: float) -> None:
        self._inner = inner
        self._site = site
        self._deadline = deadline
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._tail = b""
        self.made = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Start the head deadline, then hand the connection to aiohttp."""
        self.made = True
        self._transport = cast(asyncio.Transport, transport)
        self._timer = asyncio.get_running_loop().call_at(self._deadline, self._late)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        """Watch for the end of the first head (then stop looking), pass the bytes on."""
        if self._timer is not None:
            window = self._tail + data
            if _HEAD_END.search(window):
                self._timer.cancel()
                self._timer = None
                self._tail = b""
            else:
                self._tail = window[-2:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        """Pass on."""
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        """Pass on."""
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        """Pass on."""
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        """Pass on, and free the connection's place under the cap."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self._inner.connection_lost(exc)
        finally:
            if not self.lost:
                self.lost = True
                self._site.closed()

    def _late(self) -> None:
        self._timer = None
        CLOSED_EARLY.labels("head").inc()
        if self._transport is not None:
            self._transport.abort()  # nothing was asked: no answer owed, the descriptor is freed now


class GuardedSite(web.BaseSite):
    """A TCP(+TLS) site with a request-head timeout and a cap on open connections."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str | None,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backlog: int = 1024,
        reuse_port: bool = False,
        header_timeout: float = 10.0,
        max_connections: int = 4096,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host or None
        self._port = port
        self._reuse_port = reuse_port
        self._header_timeout = header_timeout
        self._max = max_connections
        self._open = 0
        self._room = asyncio.Event()
        self._sock: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        """The site's URL."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host or '0.0.0.0'}:{self.port}"

    @property
    def port(self) -> int:
        """The bound port (the asked one before start)."""
        return int(self._sock.getsockname()[1]) if self._sock is not None else self._port

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        return self._open

    async def start(self) -> None:
        """Bind, listen, and start accepting."""
        await super().start()
        family, _, _, _, address = socket.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        self._sock = socket.create_server(
            address[:2], family=family, backlog=self._backlog, reuse_port=self._reuse_port
        )
        self._sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())

    async def stop(self) -> None:
        """Stop accepting (open connections are drained by the runner)."""
        tasks = [t for t in (self._accepting, *self._handshakes) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._sock is not None:
            self._sock.close()
        await super().stop()

    def closed(self) -> None:
        """One connection fewer; accept again if the cap had stopped it."""
        self._open -= 1
        OPEN.dec()
        if self._open < self._max:
            self._room.set()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        while True:
            while self._open >= self._max:
                self._room.clear()
                await self._room.wait()
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # e.g. EMFILE: back off instead of spinning
                log.warning("accept_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            self._open += 1
            OPEN.inc()
            if self._ssl_context is None:
                await self._adopt(conn, loop.time())
            else:
                task = loop.create_task(self._adopt(conn, loop.time()))
                self._handshakes.add(task)
                task.add_done_callback(self._handshakes.discard)

    async def _adopt(self, conn: socket.socket, accepted: float) -> None:
        """Hand an accepted socket to aiohttp (after the TLS handshake, bounded by the timeout)."""
        loop = asyncio.get_running_loop()
        server = self._runner.server
        assert server is not None
        guard = _HeadDeadline(server(), self, accepted + self._header_timeout)
        tls: dict[str, Any] = {}
        if self._ssl_context is not None:
            tls = {"ssl": self._ssl_context, "ssl_handshake_timeout": self._header_timeout}
        try:
            await loop.connect_accepted_socket(lambda: guard, conn, **tls)
        except (Exception, asyncio.CancelledError) as exc:
            if not guard.made:
                if isinstance(exc, TimeoutError):
                    CLOSED_EARLY.labels("tls").inc()
                with suppress(OSError):
                    conn.close()
                guard.lost = True
                self.closed()
            if isinstance(exc, asyncio.CancelledError):
                raise
