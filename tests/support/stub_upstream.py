"""A loopback TLS stub upstream that records what the proxy sends and misbehaves on request."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from proxy.demo.certs import Pki
from tests.support.proxy_server import free_port

BIG_CHUNK = b"x" * (1024 * 1024)


@dataclass
class Seen:
    """One request as the stub received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StubUpstream:
    """Serves `/api/v1/*` over TLS requiring the PKI's client certificate; records every request."""

    pki: Pki
    mode: str = "ok"  # ok | hang | big | unauthorized
    big_mb: int = 50
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path, request.query_string, dict(request.headers), body)
        )
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "unauthorized":
            return web.Response(
                status=401,
                text="no",
                headers={"WWW-Authenticate": 'Bearer realm="upstream"', "Set-Cookie": "s=1"},
            )
        if self.mode == "big":
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            response.content_length = self.big_mb * len(BIG_CHUNK)
            await response.prepare(request)
            for _ in range(self.big_mb):
                await response.write(BIG_CHUNK)
            return response
        return web.json_response(
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            headers={"Set-Cookie": "upstream=secret", "WWW-Authenticate": "Basic"},
        )

    def _ssl(self) -> ssl.SSLContext:
        ctx = self.pki.server_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(self.pki.ca_cert))
        return ctx

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._ssl()).start()

    def start(self) -> StubUpstream:
        """Start serving in a background thread."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            fut: Any = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
            with contextlib.suppress(TimeoutError):
                fut.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def env(self) -> dict[str, str]:
        """`PROXY_PROMETHEUS_*` pointing a proxy at this stub with the PKI's client certificate."""
        return {
            "PROXY_PROMETHEUS_BASE_URL": self.base_url + "/api/metrics/v1/default",
            "PROXY_PROMETHEUS_CA_CERT": str(self.pki.ca_cert),
            "PROXY_PROMETHEUS_TLS_CERT": str(self.pki.client_cert),
            "PROXY_PROMETHEUS_TLS_KEY": str(self.pki.client_key),
        }
