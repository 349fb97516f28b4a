"""A loopback TLS stub upstream that records what the proxy sends and misbehaves on request."""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from proxy_demo.certs import Pki
from tests.support.loopback import LoopbackServer

BIG_CHUNK = b"x" * (1024 * 1024)


def _compact(doc: object) -> str:
    """JSON without spaces, as Prometheus encodes it."""
    return json.dumps(doc, separators=(",", ":"))


@dataclass
class Seen:
    """One request as the stub received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class StubUpstream(LoopbackServer):
    """Serves `/api/v1/*` over TLS requiring the PKI's client certificate; records every request."""

    scheme = "https"

    pki: Pki
    mode: str = "ok"  # ok | hang | big | unauthorized | canned
    big_mb: int = 50
    canned: bytes = b""  # mode "canned": this gzip-encoded JSON body answers every request
    delay: float = 0.0  # seconds before every answer (a slow upstream)
    seen: list[Seen] = field(default_factory=list)
    abandoned: int = 0  # requests whose connection the proxy closed before the delayed answer

    def __post_init__(self) -> None:
        LoopbackServer.__init__(self)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(
            Seen(request.method, request.path, request.query_string, dict(request.headers), body)
        )
        if self.delay:
            await asyncio.sleep(self.delay)
            if request.transport is None or request.transport.is_closing():
                self.abandoned += 1
        if self.mode == "hang":
            await asyncio.sleep(3600)
        if self.mode == "unauthorized":
            return web.Response(
                status=401,
                text="no",
                headers={"WWW-Authenticate": 'Bearer realm="upstream"', "Set-Cookie": "s=1"},
            )
        if self.mode == "canned":
            headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            return web.Response(body=self.canned, headers=headers)
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
            dumps=_compact,  # as Prometheus writes it (the warnings splicer expects its envelope)
        )

    def add_routes(self, app: web.Application) -> None:
        """Every path is recorded by `_handle`."""
        app.router.add_route("*", "/{tail:.*}", self._handle)

    def ssl_context(self) -> ssl.SSLContext:
        """TLS requiring a client certificate from the PKI's CA, like the real Prometheus."""
        ctx = self.pki.server_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(str(self.pki.ca_cert))
        return ctx

    def env(self) -> dict[str, str]:
        """`PROXY_PROMETHEUS_*` pointing a proxy at this stub with the PKI's client certificate."""
        return {
            "PROXY_PROMETHEUS_BASE_URL": self.base_url + "/api/metrics/v1/default",
            "PROXY_PROMETHEUS_CA_CERT": str(self.pki.ca_cert),
            "PROXY_PROMETHEUS_TLS_CERT": str(self.pki.client_cert),
            "PROXY_PROMETHEUS_TLS_KEY": str(self.pki.client_key),
        }
