"""A controllable TCP fault proxy for reliability tests: put it between the proxy and a backend.

`FaultProxy(target_port)` listens on a free loopback port and, in mode `pass`, pipes bytes both
ways. `set(mode, ...)` switches every connection (new and, where it makes sense, existing ones):

- `pass`: forward unchanged;
- `latency`: wait `delay` seconds before forwarding each chunk (and before connecting);
- `reset`: abort every connection at once with a TCP RST (SO_LINGER 0);
- `half_open`: accept and read, never forward, never answer, never close;
- `truncate`: forward at most `limit` bytes of each backend→client stream, then RST;
- `garbage`: answer every new connection with non-protocol bytes (a TLS client sees junk);
- `respond`: answer every request on a new connection with the fixed bytes `response`
  (optionally over TLS with `ssl_context`, so a TLS client gets an HTTP answer from a "backend"
  that is really this proxy: 5xx, truncated JSON, wrong JWKS…), then close.

By default `set` first drops the established connections, as a real network event would, so
the client's pool has to reconnect. Runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import threading
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

MODES = ("pass", "latency", "reset", "half_open", "truncate", "garbage", "respond")
GARBAGE = b"\x17\x03\x03\x00\x10" + bytes(range(200, 256)) + b"HTTP/1.1 200 OK\r\n\r\n{"


@dataclass
class Behaviour:
    """The current fault and its parameters."""

    mode: str = "pass"
    delay: float = 0.0
    limit: int = 0
    response: bytes = b""
    ssl_context: ssl.SSLContext | None = None


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    backend: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """A TCP proxy to `target_host:target_port` whose behaviour tests switch at run time."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.behaviour = Behaviour()
        self.accepted = 0
        self._conns: set[_Conn] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """`127.0.0.1:<port>` of the listening side."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Start listening; returns self."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def set(self, mode: str, *, drop: bool = True, **params: Any) -> None:
        """Switch to `mode` (see the module doc); `drop` aborts established connections first."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.behaviour = Behaviour(mode=mode, **params)
        if drop or mode == "reset":
            self.drop_all()

    def drop_all(self) -> None:
        """Abort every established connection (both sides) with a reset."""
        done = threading.Event()

        def _drop() -> None:
            for conn in list(self._conns):
                self._abort(conn)
            done.set()

        self._loop.call_soon_threadsafe(_drop)
        done.wait(5)

    def _abort(self, conn: _Conn) -> None:
        _rst(conn.client)
        if conn.backend is not None:
            _rst(conn.backend)
        for task in conn.tasks:
            task.cancel()
        self._conns.discard(conn)

    def stop(self) -> None:
        """Stop listening, drop every connection and end the thread."""

        async def _stop() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._conns):
                self._abort(conn)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        b = self.behaviour
        conn = _Conn(writer)
        self._conns.add(conn)
        try:
            if b.mode == "reset":
                self._abort(conn)
            elif b.mode == "garbage":
                writer.write(GARBAGE)
                await writer.drain()
                await asyncio.sleep(0.05)
                self._abort(conn)
            elif b.mode == "half_open":
                while await reader.read(65536):
                    pass
                await asyncio.sleep(3600)
            elif b.mode == "respond":
                await self._respond(conn, reader, b)
            else:
                await self._pipe(conn, reader, writer)
        except (OSError, asyncio.CancelledError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self._conns.discard(conn)
            with suppress(Exception):
                writer.transport.abort()

    async def _respond(self, conn: _Conn, reader: asyncio.StreamReader, b: Behaviour) -> None:
        """Play a fixed HTTP answer to each request (TLS when configured), then close."""
        if b.ssl_context is not None:
            await conn.client.start_tls(b.ssl_context)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip() or 0)
        if length:
            await reader.readexactly(length)
        conn.client.write(b.response)
        await conn.client.drain()
        await asyncio.sleep(0.05)
        _rst(conn.client)

    async def _pipe(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if self.behaviour.mode == "latency":
            await asyncio.sleep(self.behaviour.delay)
        b_reader, b_writer = await asyncio.open_connection(*self.target)
        conn.backend = b_writer
        up = asyncio.ensure_future(self._copy(conn, reader, b_writer, upstream=True))
        down = asyncio.ensure_future(self._copy(conn, b_reader, writer, upstream=False))
        conn.tasks = [up, down]
        # either side closing ends the whole connection (no lingering half-closed pipes)
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        self._abort(conn)

    async def _copy(
        self,
        conn: _Conn,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        sent = 0
        while data := await src.read(65536):
            b = self.behaviour
            if b.mode == "reset":
                self._abort(conn)
                return
            if b.mode == "half_open":
                continue  # swallow: the peer waits forever
            if b.mode == "latency":
                await asyncio.sleep(b.delay)
            if b.mode == "truncate" and not upstream:
                room = b.limit - sent
                if room <= 0 or len(data) > room:
                    dst.write(data[: max(room, 0)])
                    await dst.drain()
                    self._abort(conn)
                    return
            dst.write(data)
            sent += len(data)
            await dst.drain()
        with suppress(OSError):
            if dst.can_write_eof():
                dst.write_eof()


def http_response(status: int, body: bytes, *, content_type: str = "application/json",
                  declared_length: int | None = None, extra: str = "") -> bytes:
    """Raw HTTP/1.1 response bytes; `declared_length` > len(body) makes a truncated answer."""
    reason = {200: "OK", 401: "Unauthorized", 500: "Internal Server Error", 502: "Bad Gateway",
              503: "Service Unavailable"}.get(status, "Status")
    length = len(body) if declared_length is None else declared_length
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body
