"""The upstream (Prometheus / Thanos / Observatorium): one mTLS session, requests built, never copied."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from proxy import caches, context, errors, logs, metrics, tracing
from proxy.bodies import decode_json, read_bounded, response_headers
from proxy.coalesce import Coalescer, Whole
from proxy.config import Settings
from proxy.filewatch import FileWatch
from proxy.hubs import Hub, UpstreamTarget, hubs_of

log = structlog.get_logger(__name__)

# Only these request headers of the caller reach the upstream (docs/http.md); never credentials.
FORWARDED_REQUEST_HEADERS = (
    "Accept",
    "Accept-Encoding",
    "User-Agent",
    "X-Request-Id",
    "traceparent",
    "tracestate",
)
# The upstream refusing the proxy's own credentials is the proxy's fault, not the caller's.
CREDENTIAL_STATUSES = frozenset({401, 403, 407})
# The value last given to each hub's up gauge: gauges are set only on a change, not under the
# gauge's lock on every request. The process-wide UPSTREAM_UP is 0 while any hub is down.
_up_state: dict[str, float] = {}


def _set_up(hub: str, value: float) -> None:
    """Set the hub's up gauge (and the process-wide one) when it changes."""
    if _up_state.get(hub) != value:
        _up_state[hub] = value
        metrics.HUB_UPSTREAM_UP.labels(hub).set(value)
        metrics.UPSTREAM_UP.set(min(_up_state.values()))


Params = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class UpstreamRequest:
    """A request the proxy built for the upstream: path from the route table, re-encoded params."""

    method: str
    path: str
    query: Params = ()
    form: Params | None = None

    def url_query(self) -> str:
        """The re-encoded query string."""
        return _encode(self.query)

    def body(self) -> bytes | None:
        """The form body the proxy serialised itself, as UTF-8."""
        if self.form is None:
            return None
        return _encode(self.form).encode("utf-8")


@caches.memo(caches.QUOTED, 1024)
def _quoted(value: str) -> str:
    """`quote(value, safe="")`, remembered (listed in proxy/caches.py)."""
    return quote(value, safe="")


def _encode(pairs: Params) -> str:
    """`urlencode(pairs, quote_via=quote)` for string pairs, with cached quoting."""
    return "&".join(f"{_quoted(k)}={_quoted(v)}" for k, v in pairs)


def build_ssl_context(target: UpstreamTarget) -> ssl.SSLContext:
    """The SSLContext for one hub's upstream: its CA bundle and optional client certificate."""
    ctx = ssl.create_default_context(cafile=str(target.ca_cert) if target.ca_cert else None)
    if target.tls_cert and target.tls_key:
        ctx.load_cert_chain(str(target.tls_cert), str(target.tls_key))
    return ctx


class Upstream:
    """One hub's upstream: sends built requests and streams answers back; reloads its TLS files."""

    def __init__(self, settings: Settings, hub: Hub | None = None) -> None:
        """`hub` (default: the single hub of the top-level options) names the upstream."""
        self._settings = settings
        self.hub = hub or hubs_of(settings)[0]
        self._target = self.hub.upstream
        self._base = self._target.base_url
        self._token = self._target.token
        self.credential_id = ""
        self._session: aiohttp.ClientSession | None = None
        self._watch: FileWatch | None = None
        self._old_sessions: list[aiohttp.ClientSession] = []
        # Identical requests to this upstream in flight at once are sent once (docs/caching.md).
        self.coalescer = Coalescer(settings.coalesce, settings.coalesce_max_bytes, hub=self.hub.name)

    def _files(self) -> tuple[Path | None, ...]:
        return self._target.files()

    def _new_session(self) -> aiohttp.ClientSession:
        s = self._settings
        use_tls = self._base.startswith("https://")
        # A token file is re-read with the TLS files: a rotated Secret needs no restart. An
        # emptied file keeps the last token (as for other secret files, docs/operations.md).
        token = self._target.read_token()
        if token or self._session is None:
            self._token = token
            logs.register_secrets([token])
        self.credential_id = credential_identity(self._token, self._target.tls_cert)
        connector = aiohttp.TCPConnector(
            ssl=build_ssl_context(self._target) if use_tls else False,
            limit=256,
            limit_per_host=0,
            keepalive_timeout=30,
            enable_cleanup_closed=True,
        )
        return aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(
                total=s.prometheus_timeout, sock_connect=s.prometheus_connect_timeout
            ),
            auto_decompress=False,  # Content-Encoding passes through untouched
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            trace_configs=tracing.client_trace_configs("upstream"),
        )

    async def start(self) -> None:
        """Create the session (called from the application's cleanup context)."""
        self._watch = FileWatch(self._files(), self._settings.cert_reload_interval)
        self._session = self._new_session()

    async def close(self) -> None:
        """Close every session this upstream opened."""
        for session in [self._session, *self._old_sessions]:
            if session is not None:
                await session.close()
        self._session = None
        self._old_sessions.clear()

    async def _current(self) -> aiohttp.ClientSession:
        """The session, rebuilt when a certificate, key, CA or token file changed on disk."""
        if self._session is None or self._watch is None:
            raise errors.UpstreamUnavailable("upstream session is not started")
        stamp = self._watch.changed()
        if stamp is None:
            return self._session
        try:
            fresh = self._new_session()
        except (OSError, ssl.SSLError) as exc:
            log.error("upstream_tls_reload_failed", hub=self.hub.name, error=str(exc))
            return self._session
        self._watch.accept(stamp)
        old, self._session = self._session, fresh
        # In-flight responses still read from the old session; close it later.
        self._old_sessions.append(old)
        asyncio.get_running_loop().call_later(self._settings.prometheus_timeout + 1, self._close_old, old)
        log.info("upstream_tls_reloaded", hub=self.hub.name)
        return self._session

    def _close_old(self, session: aiohttp.ClientSession) -> None:
        if session in self._old_sessions:
            self._old_sessions.remove(session)
            asyncio.ensure_future(session.close())  # noqa: RUF006 - fire and forget cleanup

    def url(self, path: str) -> str:
        """Join the base URL (which may carry a path) and an API path."""
        return self._base + path

    def headers_for(self, request: web.Request, has_body: bool) -> CIMultiDict[str]:
        """The allow-listed caller headers plus the proxy's own."""
        out: CIMultiDict[str] = CIMultiDict()
        for name in FORWARDED_REQUEST_HEADERS:
            value = request.headers.get(name)
            if value is not None:
                out[name] = value
        peer = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
        out["X-Forwarded-Proto"] = request.scheme
        if request.host:
            out["X-Forwarded-Host"] = request.host
        if has_body:
            out["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
        if self._token:
            out["Authorization"] = f"Bearer {self._token}"
        return out

    async def send(self, built: UpstreamRequest, headers: CIMultiDict[str]) -> aiohttp.ClientResponse:
        """Send the built request; map transport failures and credential refusals to errors."""
        session = await self._current()
        qs = built.url_query()
        url = self.url(built.path) + (f"?{qs}" if qs else "")
        started = time.perf_counter()
        try:
            response = await session.request(
                built.method,
                URL(url, encoded=True),
                data=built.body(),
                headers=headers,
                allow_redirects=False,
                server_hostname=self._target.server_name,
            )
        except TimeoutError as exc:
            _observe("timeout", self.hub.name, started)
            raise errors.UpstreamTimeout("upstream did not answer in time") from exc
        except (aiohttp.ClientError, OSError, ssl.SSLError) as exc:
            _set_up(self.hub.name, 0.0)
            _observe("error", self.hub.name, started)
            log.warning(
                "upstream_unreachable", hub=self.hub.name, error=type(exc).__name__, detail=str(exc)[:200]
            )
            raise errors.UpstreamUnavailable("upstream is unreachable") from exc
        _set_up(self.hub.name, 1.0)
        _observe(str(response.status), self.hub.name, started)
        if response.status in CREDENTIAL_STATUSES:
            response.release()
            log.error("upstream_refused_proxy_credentials", hub=self.hub.name, status=response.status)
            raise errors.UpstreamUnavailable(f"upstream refused the proxy's credentials ({response.status})")
        return response

    def json_headers(self, request: web.Request) -> CIMultiDict[str]:
        """Headers for an answer the proxy decodes itself: gzip or identity, nothing else."""
        headers = self.headers_for(request, False)
        headers.popall("Accept-Encoding", None)
        headers["Accept-Encoding"] = "gzip"
        return headers

    async def fetch_json(self, request: web.Request, built: UpstreamRequest) -> tuple[int, Any]:
        """Send `built` and return (status, decoded JSON body); 502 when the body is not JSON."""
        return self.decoded(await self.fetch_whole(built, self.json_headers(request)))

    async def fetch_whole(self, built: UpstreamRequest, headers: CIMultiDict[str]) -> Whole:
        """Send `built` and read its whole answer (at most PROXY_MAX_FILTERED_BYTES) as sent."""
        response = await self.send(built, headers)
        raw = await read_bounded(response, self._settings.max_filtered_bytes)
        return Whole(response.status, response_headers(response), raw)

    def decoded(self, whole: Whole) -> tuple[int, Any]:
        """(status, decoded JSON body) of a whole answer; 502 when the body is not JSON."""
        encoding = whole.headers.get("Content-Encoding", "").lower()
        return whole.status, decode_json(whole.body, encoding, self._settings.max_filtered_bytes)


def credential_identity(token: str | None, cert: Path | None) -> str:
    """A digest naming the proxy's upstream identity (its token and client certificate): results
    cached under one identity are never served under another (docs/caching.md#keys)."""
    digest = hashlib.sha256((token or "").encode())
    if cert is not None:
        try:
            digest.update(cert.read_bytes())
        except OSError:
            digest.update(str(cert).encode())
    return digest.hexdigest()[:32]


def _observe(code: str, hub: str, started: float) -> None:
    """Count one upstream call's latency and add it to the request's `upstream_ms`."""
    elapsed = time.perf_counter() - started
    metrics.UPSTREAM_SECONDS.labels(code, hub).observe(elapsed)
    context.add_time("upstream", elapsed)
